"""The errors a user can cause. Each names the field and says what is wrong."""

from __future__ import annotations


class InvalidInput(ValueError):
    """Input that breaks a rule; `errors` maps each field to its message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{field}: {message}" for field, message in self.errors.items()))

    @property
    def message(self) -> str:
        """Every field's message, as one line for people."""
        return " ".join(self.errors.values())


class NotFound(LookupError):
    """The webhook, event or delivery asked for does not exist."""
