"""API tokens and users of the HTTPS API, kept hashed in one root-only file.

Nothing stored here lets anyone log in: tokens are kept as their SHA-256 (a 256-bit random
token needs no slow hash; nobody can search that space) and passwords as scrypt hashes with
a salt of their own (people choose guessable passwords, so each guess must cost). A token is
shown once, when created; after that only its name is known.

The master owns the one instance and every change goes through it (over the root-only
socket), so no reload or cross-process locking is needed; the file is rewritten atomically
so a crash never leaves half a credential list.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.crypto.files import PRIVATE_MODE, write_atomic
from herd.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    ValidationError,
)

FORMAT_VERSION = 1
TOKEN_PREFIX = "herd_"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
NAME_ALLOWED = "1-64 letters, digits, '.', '_', '@', '-', starting with a letter or digit"
MAX_PASSWORD = 1024
#: scrypt cost: 16 MiB and ~50 ms per check here; stored with each hash so it can grow later.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
#: Password checks running at once, from all clients together: each scrypt holds 16 MiB and
#: a core, so this (not the number of connections) bounds what a flood of logins costs.
MAX_PASSWORD_CHECKS = 4
#: How long a login waits for a free check before it is told to come back (429).
PASSWORD_CHECK_WAIT = 5.0
KINDS = ("tokens", "users")


@dataclass(frozen=True)
class Principal:
    """Who made a request: recorded in the job's reason trail, checked for write access."""

    kind: str
    name: str
    read_only: bool

    def describe(self) -> str:
        return f"{self.kind} {self.name}"


def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64): everything needed to check it again."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    """Compare in constant time, with the cost parameters the hash was made with."""
    _, n, r, p, salt, digest = stored.split("$")
    expected = base64.b64decode(digest)
    got = hashlib.scrypt(
        password.encode(),
        salt=base64.b64decode(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        maxmem=SCRYPT_MAXMEM,
        dklen=len(expected),
    )
    return hmac.compare_digest(got, expected)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_name(field: str, name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValidationError(field, name, NAME_ALLOWED)
    return name


class AuthStore:
    """Tokens and users of the HTTPS API, persisted in ``path`` (mode 0600)."""

    FILE = "auth.json"

    def __init__(
        self,
        path: str | Path,
        max_checks: int = MAX_PASSWORD_CHECKS,
        check_wait: float = PASSWORD_CHECK_WAIT,
    ) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._checks = threading.BoundedSemaphore(max_checks)
        self._check_wait = check_wait
        self._data: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in KINDS}
        if self.path.exists():
            doc = json.loads(self.path.read_text())
            if doc.get("version") != FORMAT_VERSION:
                raise ValidationError("version", doc.get("version"), f"{FORMAT_VERSION}")
            self._data = {kind: dict(doc.get(kind, {})) for kind in KINDS}
        # Unknown user names are checked against this, so a wrong name costs as much time
        # as a wrong password and the answer's delay does not reveal which names exist.
        self._decoy = hash_password(secrets.token_urlsafe(16))

    # ---- management (root only: over the Unix socket) ---------------------------------

    def create_token(self, name: str, read_only: bool = False) -> str:
        """Create a token and return it; this is the only time it can be seen."""
        _check_name("name", name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        entry = {"sha256": _token_hash(token), "read_only": bool(read_only), "created": time.time()}
        self._add("tokens", name, entry)
        return token

    def add_user(self, name: str, password: str, read_only: bool = False) -> None:
        _check_name("name", name)
        if not isinstance(password, str) or not 0 < len(password) <= MAX_PASSWORD:
            raise ValidationError("password", "<hidden>", f"1 to {MAX_PASSWORD} characters")
        entry = {
            "scrypt": hash_password(password),
            "read_only": bool(read_only),
            "created": time.time(),
        }
        self._add("users", name, entry)

    def remove(self, kind: str, name: str) -> None:
        """Revoke a token or remove a user; effective for the very next request."""
        with self._lock:
            if name not in self._data[kind]:
                raise NotFoundError(f"no such {kind[:-1]}: {name}", name=name)
            del self._data[kind][name]
            self._save()

    def list(self, kind: str) -> list[dict[str, Any]]:
        """Names and flags, never hashes."""
        with self._lock:
            return [
                {"name": name, "read_only": e["read_only"], "created": e["created"]}
                for name, e in sorted(self._data[kind].items())
            ]

    def _add(self, kind: str, name: str, entry: dict[str, Any]) -> None:
        with self._lock:
            if name in self._data[kind]:
                raise ConflictError(f"a {kind[:-1]} named {name} already exists", name=name)
            self._data[kind][name] = entry
            self._save()

    def _save(self) -> None:
        doc = {"version": FORMAT_VERSION, **self._data}
        write_atomic(self.path, json.dumps(doc, indent=1, sort_keys=True).encode(), PRIVATE_MODE)

    # ---- checking (every HTTPS request) ----------------------------------------------

    def authenticate(self, authorization: str | None) -> Principal:
        """Check an ``Authorization`` header (Bearer token or Basic user:password)."""
        if not authorization:
            raise AuthenticationError(
                "authentication required: send 'Authorization: Bearer <token>' or basic auth",
                reason="missing",
            )
        scheme, _, value = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return self._check_token(value.strip())
        if scheme == "basic":
            try:
                pair = base64.b64decode(value.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise _invalid() from None
            user, sep, password = pair.partition(":")
            if not sep:
                raise _invalid()
            return self._check_user(user, password)
        raise AuthenticationError(
            f"unsupported authentication scheme {scheme!r}: use Bearer or Basic",
            reason="scheme",
        )

    def _check_token(self, token: str) -> Principal:
        digest = _token_hash(token)
        with self._lock:
            entries = list(self._data["tokens"].items())
        for name, entry in entries:
            if hmac.compare_digest(entry["sha256"], digest):
                return Principal("token", name, entry["read_only"])
        raise _invalid()

    def _check_user(self, user: str, password: str) -> Principal:
        with self._lock:
            entry = self._data["users"].get(user)
        if not self._verify(password, entry["scrypt"] if entry else self._decoy) or not entry:
            raise _invalid()
        return Principal("user", user, entry["read_only"])

    def _verify(self, password: str, stored: str) -> bool:
        """Run scrypt within the bound on concurrent checks. Unknown users (checked against
        the decoy) queue here too, so they cost the same and cannot be told apart."""
        if not self._checks.acquire(timeout=self._check_wait):
            raise RateLimitedError(
                "too many password checks in progress; try again in 1 s", retry_after=1
            )
        try:
            return check_password(password, stored)
        finally:
            self._checks.release()


def _invalid() -> AuthenticationError:
    """One answer for every wrong credential: it must not tell which part was wrong."""
    return AuthenticationError("invalid credentials", reason="invalid")
