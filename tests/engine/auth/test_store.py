"""Tokens and users on a real file: hashing, persistence, and every way a header is wrong."""

from __future__ import annotations

import base64
import json
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herd.auth.store import AuthStore, check_password, hash_password
from herd.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    ValidationError,
)
from tests.engine.auth import scrypt_gate
from tests.engine.harness import PATIENCE, poll


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def store(tmp_path: Path) -> AuthStore:
    return AuthStore(tmp_path / "auth.json")


def test_tokens_persist_hashed_and_authenticate(store: AuthStore) -> None:
    rw = store.create_token("rw")
    ro = store.create_token("ro", read_only=True)
    assert rw.startswith("herd_") and rw != ro
    reopened = AuthStore(store.path)
    assert reopened.authenticate(f"Bearer {rw}").describe() == "token rw"
    assert reopened.authenticate(f"bearer {ro}").read_only is True
    doc = json.loads(store.path.read_text())
    assert rw not in store.path.read_text()
    assert set(doc["tokens"]["rw"]) == {"sha256", "read_only", "created"}
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_users_authenticate_with_their_own_password_only(store: AuthStore) -> None:
    store.add_user("alice", "pa:ss word")
    store.add_user("bob", "other", read_only=True)
    principal = AuthStore(store.path).authenticate(basic("alice", "pa:ss word"))
    assert (principal.kind, principal.name, principal.read_only) == ("user", "alice", False)
    for header in (basic("alice", "other"), basic("carol", "pa:ss word"), basic("bob", "")):
        with pytest.raises(AuthenticationError, match="invalid credentials"):
            store.authenticate(header)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("Bearer herd_unknown", "invalid"),
        ("Basic %%%", "invalid"),
        ("Basic " + base64.b64encode(b"no-colon").decode(), "invalid"),
        ("Basic " + base64.b64encode(b"\xff:\xfe").decode(), "invalid"),
        ("Negotiate abc", "scheme"),
    ],
)
def test_bad_headers_are_refused_with_a_reason(
    store: AuthStore, header: str | None, reason: str
) -> None:
    store.create_token("t")
    with pytest.raises(AuthenticationError) as err:
        store.authenticate(header)
    assert err.value.details["reason"] == reason


def test_management_errors_name_the_problem(store: AuthStore) -> None:
    store.create_token("dup")
    with pytest.raises(ConflictError):
        store.create_token("dup")
    with pytest.raises(ValidationError) as err:
        store.create_token("bad name")
    assert err.value.details["field"] == "name"
    with pytest.raises(ValidationError) as err:
        store.add_user("u", "")
    assert err.value.details == {
        "field": "password",
        "value": "<hidden>",
        "allowed": "1 to 1024 characters",
    }
    with pytest.raises(NotFoundError):
        store.remove("users", "ghost")
    store.remove("tokens", "dup")
    assert store.list("tokens") == []
    assert AuthStore(store.path).list("tokens") == []


@settings(max_examples=10)
@given(password=st.text(min_size=1, max_size=40), other=st.text(min_size=1, max_size=40))
def test_password_hash_accepts_exactly_its_password(password: str, other: str) -> None:
    stored = hash_password(password, n=2**4)
    assert check_password(password, stored)
    assert check_password(other, stored) == (other == password)


def test_password_checks_at_once_are_bounded_for_known_and_unknown_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every check, an unknown user's decoy included, takes one of ``max_checks`` places;
    one that finds none free in time is told to come back instead of running scrypt."""
    gate = scrypt_gate.install(monkeypatch)
    store = AuthStore(tmp_path / "auth.json", max_checks=2, check_wait=0)
    store.add_user("alice", "right")
    errors: list[Exception] = []

    def attempt(header: str) -> None:
        try:
            store.authenticate(header)
        except AuthenticationError as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=attempt, args=(header,))
        for header in (basic("alice", "wrong"), basic("nobody", "x"))
    ]
    try:
        for thread in threads:
            thread.start()
        poll("two checks to be running", lambda: gate.inside == 2)
        for header in (basic("alice", "right"), basic("mallory", "x")):
            with pytest.raises(RateLimitedError) as err:
                store.authenticate(header)
            assert err.value.details["retry_after"] >= 1
        assert gate.calls == 2
    finally:
        gate.open()
        for thread in threads:
            thread.join(PATIENCE)
    assert [e.message for e in errors] == ["invalid credentials"] * 2
    assert store.authenticate(basic("alice", "right")).name == "alice"
