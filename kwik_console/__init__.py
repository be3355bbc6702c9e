"""Kwik Console: the merchant console for Kwik webhooks."""

__version__ = "0.1.0"
