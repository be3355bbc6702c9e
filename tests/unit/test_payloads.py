"""A payload written by a person: JSON text, `path=value` overrides, and the check against the type's schema."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kwik_console.core.errors import InvalidInput
from kwik_console.events import catalog, payloads, schemas


def test_every_sample_fits_its_own_schema():
    for name in catalog.event_type_names():
        assert schemas.data_error(name, catalog.sample_data(name)) is None, name


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"amount": "12500"}, 'data.amount: "12500" is not of type "integer"'),
        ({"created_at": "yesterday"}, 'data.created_at: "yesterday" is not a "date-time"'),
        ({"id": None}, 'data.id: null is not of type "string"'),
    ],
)
def test_a_field_of_the_wrong_kind_is_named_with_the_schemas_words(change, error):
    data = catalog.sample_data("payment.created") | change
    assert schemas.data_error("payment.created", data) == error
    with pytest.raises(InvalidInput) as refused:
        schemas.check_data("payment.created", data)
    assert refused.value.errors == {"data": f"The payload does not fit the payment.created schema: {error}"}


def test_a_missing_field_is_named_and_more_errors_are_counted():
    data = catalog.sample_data("invoice.created")
    del data["currency"]
    data["amount_due"] = "lots"
    assert schemas.data_error("invoice.created", data) == 'data: "currency" is a required property (and 1 more)'


def test_extra_fields_and_a_resources_other_shapes_fit():
    data = catalog.sample_data("checkout.completed") | {"payment_id": None, "note": "extra"}
    assert schemas.data_error("checkout.completed", data) is None


def test_what_no_event_may_carry_is_refused_before_the_schema_is_walked():
    deep: dict = {}
    node = deep
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    assert schemas.data_error("payment.created", deep) == "Event data must be nested at most 32 levels deep."
    assert schemas.data_error("payment.created", [1]) == "Event data must be a JSON object."
    with pytest.raises(InvalidInput, match="NaN or Infinity"):
        schemas.check_data("payment.created", catalog.sample_data("payment.created") | {"amount": float("nan")})


def test_parse_data_wants_one_json_object():
    assert payloads.parse_data('{"a": [1, 2]}') == {"a": [1, 2]}
    assert payloads.override({}, ["a=NaN"]) == {"a": "NaN"}  # not JSON: text
    for text, message in [
        ("{nope", "The payload is not valid JSON: Expecting property name enclosed in double quotes at line 1"),
        ("[1]", "Event data must be a JSON object."),
        ("[" * 100_000, "Event data must be nested at most"),
    ]:
        with pytest.raises(InvalidInput) as refused:
            payloads.parse_data(text)
        assert refused.value.errors["data"].startswith(message), refused.value.errors


def test_overrides_set_dotted_paths_with_json_values_or_text():
    sample = catalog.sample_data("customer.created")
    out = payloads.override(
        sample,
        [
            "email=amelia@example.com",
            "metadata.crm_id=42",
            "metadata.tier=gold",
            "address.city=Leeds",  # made on the way
            "company_name=null",
            'given_name="007"',
            "tags=[1, true]",
            "tags.1=false",
            "note=a=b",  # only the first = splits
        ],
    )
    assert out["email"] == "amelia@example.com"
    assert out["metadata"] == {"crm_id": 42, "tier": "gold"}
    assert out["address"] == {"city": "Leeds"}
    assert out["company_name"] is None and out["given_name"] == "007"
    assert out["tags"] == [1, False] and out["note"] == "a=b"
    assert sample == catalog.sample_data("customer.created")  # the data given is left as it was


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("amount", "write it as path=value"),
        ("=5", "write it as path=value"),
        ("metadata..x=1", "write it as path=value"),
        ("email.x=1", "data.email is text, not an object"),
        ("tags.5=1", "data.tags is a list of 1; '5' is not an index in it"),
    ],
)
def test_a_bad_override_is_refused_with_its_reason(item, message):
    with pytest.raises(InvalidInput) as refused:
        payloads.override({"email": "a@example.com", "tags": ["x"]}, [item])
    assert message in refused.value.errors["override"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=50, deadline=None, database=None)
@given(data=JSON | st.dictionaries(st.sampled_from(sorted(catalog.sample_data("payment.created"))), JSON))
def test_any_data_is_either_fit_or_refused_cleanly(data):
    try:
        schemas.check_data("payment.created", data)
    except InvalidInput as refused:
        assert list(refused.errors) == ["data"]


@settings(max_examples=100, deadline=None, database=None)
@given(items=st.lists(st.text(max_size=30), max_size=4), text=st.text(max_size=60))
def test_any_override_or_text_is_either_applied_or_refused_cleanly(items, text):
    try:
        assert isinstance(payloads.override(catalog.sample_data("customer.created"), items), dict)
    except InvalidInput as refused:
        assert list(refused.errors) == ["override"]
    try:
        assert isinstance(payloads.parse_data(text), dict)
    except InvalidInput as refused:
        assert list(refused.errors) == ["data"]
