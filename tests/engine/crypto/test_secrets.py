"""Domain secret storage and HMAC-signed, time-limited messages."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herd.crypto.secrets import (
    MAX_AGE,
    generate_domain_secret,
    load_domain_secret,
    save_domain_secret,
    sign_message,
    verify_message,
)
from herd.errors import AuthenticationError, HerdError, ValidationError

SECRET = generate_domain_secret()
NOW = 1_700_000_000.0
OFFER = {"transfer": "move-42", "ca": "-----BEGIN CERTIFICATE-----\n...", "port": 11000}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


def test_secrets_are_256_bit_hex_and_unique() -> None:
    first, second = generate_domain_secret(), generate_domain_secret()
    assert len(bytes.fromhex(first)) == 32
    assert first != second


def test_secret_file_is_root_only_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "domain-secret"
    save_domain_secret(path, SECRET)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_domain_secret(path) == SECRET


def test_truncated_secret_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "domain-secret"
    path.write_text(SECRET[:20])
    with pytest.raises(ValidationError) as err:
        load_domain_secret(path)
    assert err.value.details["field"] == "secret"
    assert SECRET[:20] not in str(err.value)


@given(json_values)
def test_any_json_payload_survives_a_trip_through_the_wire(payload: Any) -> None:
    envelope = json.loads(json.dumps(sign_message(SECRET, payload, now=NOW)))
    assert verify_message(SECRET, envelope, now=NOW) == payload


def test_same_payload_signs_to_distinct_envelopes() -> None:
    first, second = sign_message(SECRET, OFFER, now=NOW), sign_message(SECRET, OFFER, now=NOW)
    assert first["salt"] != second["salt"]
    assert first["hmac"] != second["hmac"]


@pytest.mark.parametrize(
    ("name", "forged"),
    [
        ("msg", json.dumps({**OFFER, "port": 22}, sort_keys=True, separators=(",", ":"))),
        ("timestamp", int(NOW) + 60),
        ("salt", "00" * 16),
        ("hmac", "0" * 64),
    ],
)
def test_any_altered_field_is_detected(name: str, forged: Any) -> None:
    envelope = sign_message(SECRET, OFFER, now=NOW)
    envelope[name] = forged
    with pytest.raises(AuthenticationError, match="signature mismatch"):
        verify_message(SECRET, envelope, now=NOW)


def test_message_signed_with_another_secret_is_refused() -> None:
    envelope = sign_message(generate_domain_secret(), OFFER, now=NOW)
    with pytest.raises(AuthenticationError, match="another domain secret"):
        verify_message(SECRET, envelope, now=NOW)


def test_message_is_accepted_until_max_age_then_expires() -> None:
    envelope = sign_message(SECRET, OFFER, now=NOW)
    assert verify_message(SECRET, envelope, now=NOW + MAX_AGE) == OFFER
    with pytest.raises(AuthenticationError, match="expired") as err:
        verify_message(SECRET, envelope, now=NOW + MAX_AGE + 1)
    assert err.value.details["max_age"] == MAX_AGE
    with pytest.raises(AuthenticationError, match="expired"):
        verify_message(SECRET, envelope, max_age=10, now=NOW + 11)


def test_message_from_too_far_in_the_future_is_refused() -> None:
    envelope = sign_message(SECRET, OFFER, now=NOW + MAX_AGE + 1)
    with pytest.raises(AuthenticationError, match="future"):
        verify_message(SECRET, envelope, now=NOW)


def test_authentication_error_crosses_the_api_as_401() -> None:
    envelope = sign_message(SECRET, OFFER, now=NOW)
    with pytest.raises(AuthenticationError) as err:
        verify_message(SECRET, envelope, now=NOW + 3600)
    rebuilt = HerdError.from_dict(json.loads(json.dumps(err.value.to_dict())))
    assert type(rebuilt) is AuthenticationError
    assert rebuilt.http_status == 401
    assert rebuilt.message == err.value.message


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"msg": None}, "envelope.msg"),
        ({"timestamp": "1700000000"}, "envelope.timestamp"),
        ({"timestamp": True}, "envelope.timestamp"),
        ({"hmac": 5}, "envelope.hmac"),
    ],
)
def test_malformed_envelope_names_the_field(change: dict[str, Any], field: str) -> None:
    envelope = {**sign_message(SECRET, OFFER, now=NOW), **change}
    with pytest.raises(ValidationError) as err:
        verify_message(SECRET, envelope, now=NOW)
    assert err.value.details["field"] == field


def test_unserialisable_payload_and_bad_secret_are_bad_input() -> None:
    with pytest.raises(ValidationError) as err:
        sign_message(SECRET, {"when": object()})
    assert err.value.details["field"] == "message"
    with pytest.raises(ValidationError) as err:
        sign_message("not-hex", OFFER)
    assert err.value.details["field"] == "secret"
