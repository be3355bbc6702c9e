"""Leaves every layer uses: settings, errors, logs, the clock, text rules, the address policy, wake-ups."""
