"""Events: the catalogue, publishing, the delivery log, payload search and the delivery figures."""
