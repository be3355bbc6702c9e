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


# Ids are INTEGER on PostgreSQL (and at most 2^63 - 1 on SQLite): a number
# outside this range names no row, and sent to the database it would fail
# with an overflow error instead of finding nothing.
ID_MAX = 2**31 - 1


def check_id(kind: str, value: int) -> int:
    """Raise NotFound ("Webhook 0 does not exist.") for an id no row can have, before any query."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= ID_MAX:
        raise NotFound(f"{kind} {value} does not exist.")
    return value


def check_all(checks) -> dict:
    """Run each (field, check, value) and return {field: clean value}; raise one InvalidInput naming every bad
    field at once, so a form shows all its errors together."""
    clean, errors = {}, {}
    for field, check, value in checks:
        try:
            clean[field] = check(value)
        except InvalidInput as exc:
            errors |= exc.errors
    if errors:
        raise InvalidInput(errors)
    return clean
