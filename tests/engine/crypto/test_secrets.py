"""Domain secret storage and HMAC-signed, time-limited, single-use messages."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herd.crypto.secrets import (
    MAX_AGE,
    ReplayCache,
    generate_domain_secret,
    load_domain_secret,
    message_digest,
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


@contextlib.contextmanager
def working_umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


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
    assert verify_message(SECRET, envelope, now=NOW, replay=None) == payload


def test_same_payload_signs_to_distinct_envelopes() -> None:
    first, second = sign_message(SECRET, OFFER, now=NOW), sign_message(SECRET, OFFER, now=NOW)
    assert first["nonce"] != second["nonce"]
    assert first["hmac"] != second["hmac"]


@pytest.mark.parametrize(
    ("name", "forged"),
    [
        ("msg", json.dumps({**OFFER, "port": 22}, sort_keys=True, separators=(",", ":"))),
        ("timestamp", int(NOW) + 60),
        ("expires", int(NOW) + 3600),
        ("nonce", "00" * 16),
        ("reply_to", "ab" * 32),
        ("hmac", "0" * 64),
    ],
)
def test_any_altered_field_is_detected(name: str, forged: Any) -> None:
    envelope = sign_message(SECRET, OFFER, now=NOW)
    envelope[name] = forged
    with pytest.raises(AuthenticationError, match="signature mismatch"):
        verify_message(SECRET, envelope, now=NOW, replay=None)


def test_message_signed_with_another_secret_is_refused() -> None:
    envelope = sign_message(generate_domain_secret(), OFFER, now=NOW)
    with pytest.raises(AuthenticationError, match="another domain secret"):
        verify_message(SECRET, envelope, now=NOW, replay=None)


def test_message_is_accepted_until_max_age_then_expires() -> None:
    envelope = sign_message(SECRET, OFFER, now=NOW)
    assert verify_message(SECRET, envelope, now=NOW + MAX_AGE, replay=None) == OFFER
    with pytest.raises(AuthenticationError, match="expired") as err:
        verify_message(SECRET, envelope, now=NOW + MAX_AGE + 1, replay=None)
    assert err.value.details["max_age"] == MAX_AGE
    with pytest.raises(AuthenticationError, match="expired"):
        verify_message(SECRET, envelope, max_age=10, now=NOW + 11, replay=None)


def test_message_from_too_far_in_the_future_is_refused() -> None:
    envelope = sign_message(SECRET, OFFER, now=NOW + MAX_AGE + 1)
    with pytest.raises(AuthenticationError, match="future"):
        verify_message(SECRET, envelope, now=NOW, replay=None)


def test_authentication_error_crosses_the_api_as_401() -> None:
    envelope = sign_message(SECRET, OFFER, now=NOW)
    with pytest.raises(AuthenticationError) as err:
        verify_message(SECRET, envelope, now=NOW + 3600, replay=None)
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
        ({"expires": None}, "envelope.expires"),
        ({"nonce": "a\x00b"}, "envelope.nonce"),
        ({"reply_to": "zz"}, "envelope.reply_to"),
    ],
)
def test_malformed_envelope_names_the_field(change: dict[str, Any], field: str) -> None:
    envelope = {**sign_message(SECRET, OFFER, now=NOW), **change}
    with pytest.raises(ValidationError) as err:
        verify_message(SECRET, envelope, now=NOW, replay=None)
    assert err.value.details["field"] == field


def test_unserialisable_payload_and_bad_secret_are_bad_input() -> None:
    with pytest.raises(ValidationError) as err:
        sign_message(SECRET, {"when": object()})
    assert err.value.details["field"] == "message"
    with pytest.raises(ValidationError) as err:
        sign_message("not-hex", OFFER)
    assert err.value.details["field"] == "secret"


def test_sender_expiry_is_honoured_within_max_age() -> None:
    envelope = sign_message(SECRET, OFFER, now=NOW, ttl=30)
    assert envelope["expires"] == int(NOW) + 30
    assert verify_message(SECRET, envelope, now=NOW + 30, replay=None) == OFFER
    with pytest.raises(AuthenticationError, match="expired"):
        verify_message(SECRET, envelope, now=NOW + 31, replay=None)


def test_a_long_sender_expiry_is_capped_at_max_age() -> None:
    envelope = sign_message(SECRET, OFFER, now=NOW, ttl=86400)
    with pytest.raises(AuthenticationError, match="expired"):
        verify_message(SECRET, envelope, now=NOW + MAX_AGE + 1, replay=None)


def test_a_replayed_message_is_refused() -> None:
    cache = ReplayCache()
    envelope = sign_message(SECRET, OFFER, now=NOW)
    assert verify_message(SECRET, envelope, now=NOW, replay=cache) == OFFER
    with pytest.raises(AuthenticationError, match="replayed") as err:
        verify_message(SECRET, dict(envelope), now=NOW + 1, replay=cache)
    assert err.value.details["nonce"] == envelope["nonce"]


def test_a_verifier_must_name_its_replay_cache() -> None:
    """No default cache: one that a restart empties must never be picked up silently."""
    envelope = sign_message(SECRET, OFFER, now=NOW)
    with pytest.raises(TypeError, match="replay"):
        verify_message(SECRET, envelope, now=NOW)  # type: ignore[call-arg]


def test_the_job_holding_a_message_may_check_it_again_others_may_not() -> None:
    cache = ReplayCache()
    envelope = sign_message(SECRET, OFFER, now=NOW)
    verify_message(SECRET, envelope, now=NOW, replay=cache, holder="job-7")
    assert verify_message(SECRET, envelope, now=NOW, replay=cache, holder="job-7") == OFFER
    for other in ("job-8", ""):
        with pytest.raises(AuthenticationError, match="replayed"):
            verify_message(SECRET, envelope, now=NOW, replay=cache, holder=other)


def test_replay_cache_is_bounded_and_forgets_only_expired_nonces() -> None:
    cache = ReplayCache(capacity=2)
    first, second, third = (sign_message(SECRET, OFFER, now=NOW, ttl=10) for _ in range(3))
    verify_message(SECRET, first, now=NOW, replay=cache)
    verify_message(SECRET, second, now=NOW, replay=cache)
    with pytest.raises(AuthenticationError, match="too many signed messages"):
        verify_message(SECRET, third, now=NOW, replay=cache)
    # Once the first two have expired (and so can no longer be replayed), room returns.
    late = sign_message(SECRET, OFFER, now=NOW + 11)
    assert verify_message(SECRET, late, now=NOW + 11, replay=cache) == OFFER
    with pytest.raises(AuthenticationError, match="expired"):
        verify_message(SECRET, first, now=NOW + 11, replay=cache)


def stored_nonces(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {nonce for (nonce,) in db.execute("SELECT nonce FROM nonces")}


def test_an_accepted_nonce_is_refused_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / ReplayCache.FILE
    envelope = sign_message(SECRET, OFFER, now=NOW)
    verify_message(SECRET, envelope, now=NOW, replay=ReplayCache(path, now=NOW), holder="job-7")
    restarted = ReplayCache(path, now=NOW + 1)  # a new process opens the same file
    with pytest.raises(AuthenticationError, match="replayed"):
        verify_message(SECRET, envelope, now=NOW + 1, replay=restarted, holder="job-8")
    # The job holding it, resumed by the new process, may still check it again.
    assert verify_message(SECRET, envelope, now=NOW + 1, replay=restarted, holder="job-7") == OFFER


def test_a_nonce_is_on_disk_before_the_message_is_accepted(tmp_path: Path) -> None:
    """A crash right after verification must not forget the nonce (no close, no flush)."""
    path = tmp_path / ReplayCache.FILE
    envelope = sign_message(SECRET, OFFER, now=NOW)
    verify_message(SECRET, envelope, now=NOW, replay=ReplayCache(path, now=NOW))
    assert stored_nonces(path) == {envelope["nonce"]}


def test_expired_nonces_are_pruned_when_the_file_is_opened(tmp_path: Path) -> None:
    path = tmp_path / ReplayCache.FILE
    short, long = (sign_message(SECRET, OFFER, now=NOW, ttl=ttl) for ttl in (10, 100))
    cache = ReplayCache(path, now=NOW)
    for envelope in (short, long):
        verify_message(SECRET, envelope, now=NOW, replay=cache)
    cache.close()
    ReplayCache(path, now=NOW + 11).close()
    assert stored_nonces(path) == {long["nonce"]}


def test_the_nonce_file_is_root_only(tmp_path: Path) -> None:
    path = tmp_path / ReplayCache.FILE
    path.touch(mode=0o644)
    ReplayCache(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fresh = tmp_path / "fresh.db"
    with working_umask(0o022):
        ReplayCache(fresh).close()
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


def test_a_persistent_cache_full_of_live_nonces_refuses_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / ReplayCache.FILE
    cache = ReplayCache(path, capacity=2, now=NOW)
    for _ in range(2):
        verify_message(SECRET, sign_message(SECRET, OFFER, now=NOW, ttl=10), now=NOW, replay=cache)
    cache.close()
    restarted = ReplayCache(path, capacity=2, now=NOW + 1)
    with pytest.raises(AuthenticationError, match="too many signed messages"):
        verify_message(SECRET, sign_message(SECRET, OFFER, now=NOW), now=NOW + 1, replay=restarted)
    late = sign_message(SECRET, OFFER, now=NOW + 11)
    assert verify_message(SECRET, late, now=NOW + 11, replay=restarted) == OFFER


def test_concurrent_admits_of_one_nonce_accept_it_once(tmp_path: Path) -> None:
    cache = ReplayCache(tmp_path / ReplayCache.FILE, now=NOW)
    envelope = sign_message(SECRET, OFFER, now=NOW)
    start = threading.Barrier(8, timeout=60)  # the timeout is only a safety net

    def verify(_: int) -> bool:
        start.wait()
        try:
            verify_message(SECRET, envelope, now=NOW, replay=cache)
        except AuthenticationError:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        assert sorted(pool.map(verify, range(8))) == [False] * 7 + [True]


def test_an_answer_is_bound_to_its_offer() -> None:
    offer = sign_message(SECRET, OFFER, now=NOW)
    other = sign_message(SECRET, OFFER, now=NOW)
    answer = sign_message(SECRET, {"kind": "answer"}, now=NOW, reply_to=offer)
    assert answer["reply_to"] == message_digest(offer) != message_digest(other)
    with pytest.raises(AuthenticationError, match="does not answer this offer"):
        verify_message(SECRET, answer, now=NOW, reply_to=other, replay=None)
    assert verify_message(SECRET, answer, now=NOW, reply_to=offer, replay=None) == {
        "kind": "answer"
    }


def test_an_answer_is_not_a_request_and_a_request_is_not_an_answer() -> None:
    offer = sign_message(SECRET, OFFER, now=NOW)
    answer = sign_message(SECRET, OFFER, now=NOW, reply_to=offer)
    with pytest.raises(AuthenticationError, match="is an answer"):
        verify_message(SECRET, answer, now=NOW, replay=None)
    with pytest.raises(AuthenticationError, match="does not answer this offer"):
        verify_message(SECRET, offer, now=NOW, reply_to=answer, replay=None)
