"""Plain HTTP routes beside the app: sign-in forms, the export, the probes and the metrics scrape."""
