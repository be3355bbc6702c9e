"""Reflex states, one per page or dialog. They call the services; no SQL and no HTTP here."""
