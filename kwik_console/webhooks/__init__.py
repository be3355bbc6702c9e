"""Webhooks: their rules, the service that changes them (audited), signing and the signature checker."""
