"""Operating deliveries: resend, recoveries, auto-disable with notices, retention.

Plain service functions: the console, the CLI and the API call them; the
delivery scheduler runs the background jobs (`jobs.py`) in every process that
delivers, and each job keeps its state in the database.
"""
