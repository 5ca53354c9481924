"""Tokens and users on a real file: hashing, persistence, and every way a header is wrong."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herd.auth.store import AuthStore, check_password, hash_password
from herd.errors import AuthenticationError, ConflictError, NotFoundError, ValidationError


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
