import json
import re

from kwik_console.events import catalog

SPEC_TYPES = """bank_account.created bank_account.updated checkout.completed checkout.expired checkout.failed
collection.created collection.updated customer.created customer.updated invoice.created invoice.updated
mandate.created mandate.updated payment.created payment.updated payout.created payout.updated
transaction.created transaction.updated""".split()

ID_PREFIXES = {
    "bank_account": "ba_",
    "checkout": "chk_",
    "collection": "col_",
    "customer": "cus_",
    "invoice": "inv_",
    "mandate": "man_",
    "payment": "pay_",
    "payout": "po_",
    "transaction": "txn_",
}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def test_catalogue_is_exactly_the_spec_list():
    assert catalog.event_type_names() == SPEC_TYPES


def test_every_type_has_a_description_and_realistic_sample():
    for event_type in catalog.EVENT_TYPES.values():
        assert event_type.description.endswith(".") and len(event_type.description) > 15
        sample = event_type.sample
        assert sample["object"] == event_type.resource
        assert sample["id"].startswith(ID_PREFIXES[event_type.resource])
        assert ISO_UTC.match(sample["created_at"])
        for key, value in sample.items():
            if key in ("amount", "amount_due", "net", "fee"):
                assert isinstance(value, int), f"{event_type.name}.{key} must be minor units"
                assert re.fullmatch(r"[A-Z]{3}", sample["currency"])
        json.dumps(sample)  # serialisable as is


def test_sample_data_is_a_copy():
    data = catalog.sample_data("payment.created")
    data["amount"] = 1
    assert catalog.sample_data("payment.created")["amount"] == 12500


def test_grouped_by_resource_in_catalogue_order():
    groups = catalog.grouped()
    assert list(groups) == list(ID_PREFIXES)
    assert [t.name for t in groups["checkout"]] == ["checkout.completed", "checkout.expired", "checkout.failed"]
