"""The event catalogue: the only list of event types in the code.

Each type has a one-line description and realistic sample `data`, which Test
Webhook sends and `kwik-console events publish --sample` uses.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class EventType:
    name: str
    description: str
    sample: dict[str, Any]
    # Operational events are the console's notices about webhooks: only the
    # operational webhook receives them (see operations/notices.py).
    operational: bool = False

    @property
    def resource(self) -> str:
        """`payment` for `payment.created`: the group it shows under in the Events field."""
        return "operational" if self.operational else self.name.split(".", 1)[0]


_CREATED = "2026-11-28T15:04:05.123Z"
_UPDATED = "2026-11-28T15:09:41.502Z"

_BANK_ACCOUNT = {
    "object": "bank_account",
    "id": "ba_01JDX4Q8ZK3M7TVA9R2F6C5HWE",
    "customer_id": "cus_01JDX3F2N8W6KQ1Y4B7RZT0MPS",
    "account_holder_name": "Amelia Hart",
    "bank_name": "Barclays",
    "account_number_last4": "3190",
    "sort_code": "20-00-00",
    "currency": "GBP",
    "country": "GB",
    "status": "verified",
    "created_at": _CREATED,
}
_CHECKOUT = {
    "object": "checkout",
    "id": "chk_01JDX5B1C9RQ2V8N4Y6T3K7MZA",
    "customer_id": "cus_01JDX3F2N8W6KQ1Y4B7RZT0MPS",
    "payment_id": "pay_01JDX5C7G2M4P9X1Q8W3V6NRTE",
    "amount": 12500,
    "currency": "GBP",
    "description": "Annual plan - Hart & Co",
    "status": "completed",
    "expires_at": "2026-11-28T16:04:05.123Z",
    "created_at": _CREATED,
}
_COLLECTION = {
    "object": "collection",
    "id": "col_01JDX6H3T8K2M5Q9R1W4Z7BNCY",
    "mandate_id": "man_01JDX4V6P1S3D8F2G5H9J7KLQX",
    "customer_id": "cus_01JDX3F2N8W6KQ1Y4B7RZT0MPS",
    "amount": 4999,
    "currency": "GBP",
    "charge_date": "2026-12-01",
    "reference": "KWIK-INV-1042",
    "status": "pending_submission",
    "created_at": _CREATED,
}
_CUSTOMER = {
    "object": "customer",
    "id": "cus_01JDX3F2N8W6KQ1Y4B7RZT0MPS",
    "email": "amelia.hart@example.com",
    "given_name": "Amelia",
    "family_name": "Hart",
    "company_name": "Hart & Co",
    "country": "GB",
    "metadata": {"crm_id": "0031x00000AbCdE"},
    "created_at": _CREATED,
}
_INVOICE = {
    "object": "invoice",
    "id": "inv_01JDX7K9M2N4P6Q8R1S3T5V7WX",
    "customer_id": "cus_01JDX3F2N8W6KQ1Y4B7RZT0MPS",
    "number": "INV-1042",
    "amount_due": 4999,
    "amount_paid": 0,
    "currency": "GBP",
    "due_date": "2026-12-12",
    "status": "open",
    "created_at": _CREATED,
}
_MANDATE = {
    "object": "mandate",
    "id": "man_01JDX4V6P1S3D8F2G5H9J7KLQX",
    "customer_id": "cus_01JDX3F2N8W6KQ1Y4B7RZT0MPS",
    "bank_account_id": "ba_01JDX4Q8ZK3M7TVA9R2F6C5HWE",
    "scheme": "bacs",
    "reference": "KWIK-HART-0001",
    "status": "active",
    "created_at": _CREATED,
}
_PAYMENT = {
    "object": "payment",
    "id": "pay_01JDX5C7G2M4P9X1Q8W3V6NRTE",
    "customer_id": "cus_01JDX3F2N8W6KQ1Y4B7RZT0MPS",
    "amount": 12500,
    "amount_refunded": 0,
    "currency": "GBP",
    "description": "Annual plan - Hart & Co",
    "method": "card",
    "status": "confirmed",
    "created_at": _CREATED,
}
_PAYOUT = {
    "object": "payout",
    "id": "po_01JDX8P4R6T8V1X3Z5B7D9F2HK",
    "bank_account_id": "ba_01JDX9A2C4E6G8J1L3N5Q7S9UW",
    "amount": 982450,
    "deducted_fees": 1840,
    "currency": "GBP",
    "arrival_date": "2026-11-30",
    "status": "pending",
    "created_at": _CREATED,
}
_TRANSACTION = {
    "object": "transaction",
    "id": "txn_01JDX9D3F5H7K9M2P4R6T8W1YZ",
    "payment_id": "pay_01JDX5C7G2M4P9X1Q8W3V6NRTE",
    "payout_id": "po_01JDX8P4R6T8V1X3Z5B7D9F2HK",
    "type": "payment",
    "amount": 12500,
    "fee": 140,
    "net": 12360,
    "currency": "GBP",
    "status": "available",
    "created_at": _CREATED,
}


def _updated(sample: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**sample, **changes, "updated_at": _UPDATED}


_TYPES = (
    EventType("bank_account.created", "A bank account was added to a customer.", _BANK_ACCOUNT),
    EventType(
        "bank_account.updated",
        "A bank account's details or verification status changed.",
        _updated(_BANK_ACCOUNT, account_holder_name="Amelia J. Hart"),
    ),
    EventType("checkout.completed", "A customer completed a checkout and paid.", _CHECKOUT),
    EventType(
        "checkout.expired",
        "A checkout expired before the customer paid.",
        {**_CHECKOUT, "payment_id": None, "status": "expired"},
    ),
    EventType(
        "checkout.failed",
        "A customer's payment failed at checkout.",
        {**_CHECKOUT, "payment_id": None, "status": "failed", "failure_reason": "card_declined"},
    ),
    EventType("collection.created", "A direct debit collection was scheduled against a mandate.", _COLLECTION),
    EventType(
        "collection.updated",
        "A collection's status changed, for example submitted, paid or failed.",
        _updated(_COLLECTION, status="paid_out"),
    ),
    EventType("customer.created", "A customer was created.", _CUSTOMER),
    EventType(
        "customer.updated",
        "A customer's details changed.",
        _updated(_CUSTOMER, email="accounts@hartandco.example.com"),
    ),
    EventType("invoice.created", "An invoice was issued to a customer.", _INVOICE),
    EventType(
        "invoice.updated",
        "An invoice changed, for example it was paid or voided.",
        _updated(_INVOICE, amount_paid=4999, status="paid"),
    ),
    EventType("mandate.created", "A customer authorised a direct debit mandate.", _MANDATE),
    EventType(
        "mandate.updated",
        "A mandate's status changed, for example cancelled or expired.",
        _updated(_MANDATE, status="cancelled"),
    ),
    EventType("payment.created", "A payment was created.", _PAYMENT),
    EventType(
        "payment.updated",
        "A payment's status changed, for example confirmed, failed or refunded.",
        _updated(_PAYMENT, amount_refunded=2500, status="partially_refunded"),
    ),
    EventType("payout.created", "A payout to your bank account was created.", _PAYOUT),
    EventType(
        "payout.updated",
        "A payout's status changed, for example paid or failed.",
        _updated(_PAYOUT, status="paid"),
    ),
    EventType("transaction.created", "A balance transaction was recorded.", _TRANSACTION),
    EventType(
        "transaction.updated",
        "A balance transaction's status changed, for example it became available.",
        _updated(_TRANSACTION, status="settled"),
    ),
)

_WEBHOOK_NOTICE = {
    "object": "webhook",
    "id": 42,
    "name": "Orders service",
    "url": "https://hooks.example.com/kwik",
    "status": "live",
    "failing_since": "2026-11-23T15:04:05.123Z",
    "last_http_code": 503,
    "last_error": None,
}
_OPERATIONAL_TYPES = (
    EventType(
        "webhook.disabled",
        "A webhook was disabled because every attempt failed for too long.",
        {
            **_WEBHOOK_NOTICE,
            "status": "disabled",
            "disabled_at": "2026-11-28T15:04:05.123Z",
            "reason": "Every attempt failed for 5 days.",
        },
        operational=True,
    ),
    EventType(
        "webhook.failing",
        "A webhook's attempt failed after its last one succeeded.",
        _WEBHOOK_NOTICE,
        operational=True,
    ),
    EventType(
        "webhook.recovered",
        "A failing webhook accepted an attempt again.",
        {**_WEBHOOK_NOTICE, "failing_since": None, "last_http_code": 200, "failed_for_seconds": 5400},
        operational=True,
    ),
    EventType(
        "delivery.exhausted",
        "A delivery failed its last scheduled attempt: no more retries.",
        {
            "object": "delivery",
            "id": 1234,
            "webhook_id": 42,
            "event_id": "evt_01jdx7r2m4k8p6q9t3v5w1y0za",
            "event_type": "payment.created",
            "attempts": 8,
            "last_http_code": 500,
            "last_error": None,
        },
        operational=True,
    ),
)

EVENT_TYPES: dict[str, EventType] = {t.name: t for t in _TYPES}
OPERATIONAL_TYPES: dict[str, EventType] = {t.name: t for t in _OPERATIONAL_TYPES}


def event_type_names() -> list[str]:
    """The merchant's event types: what webhooks subscribe to and the platform publishes."""
    return list(EVENT_TYPES)


def is_event_type(name: str) -> bool:
    return name in EVENT_TYPES


def operational_type_names() -> list[str]:
    return list(OPERATIONAL_TYPES)


def is_operational_type(name: str) -> bool:
    return name in OPERATIONAL_TYPES


def is_known_type(name: str) -> bool:
    """Any type a delivery may have: the merchant's and the operational ones."""
    return name in EVENT_TYPES or name in OPERATIONAL_TYPES


def describe(name: str) -> str:
    return (EVENT_TYPES.get(name) or OPERATIONAL_TYPES[name]).description


def sample_data(name: str) -> dict[str, Any]:
    """A fresh copy of the sample `data` for an event type (KeyError if unknown)."""
    return copy.deepcopy((EVENT_TYPES.get(name) or OPERATIONAL_TYPES[name]).sample)


def grouped(*, operational: bool = False) -> dict[str, list[EventType]]:
    """Event types grouped by resource, in catalogue order; the operational group last, if asked for."""
    groups: dict[str, list[EventType]] = {}
    for event_type in (*_TYPES, *(_OPERATIONAL_TYPES if operational else ())):
        groups.setdefault(event_type.resource, []).append(event_type)
    return groups
