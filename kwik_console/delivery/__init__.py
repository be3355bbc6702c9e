"""Sending events to webhooks: signing, one attempt, retries, and the dispatcher."""
