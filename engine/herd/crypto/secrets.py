"""The cluster domain secret and messages signed with it.

Clusters that may move instances between each other share one random "domain secret"
(Ganeti's cluster domain secret). Before any certificate or disk byte crosses between
clusters, each side signs what it offers (its CA certificate, the transfer endpoint) with
an HMAC under that secret; the other side accepts the offer only if the signature checks
out and the message is recent. The secret itself never travels.

A signed message is a JSON-able envelope::

    {"msg": "<canonical JSON of the payload>", "timestamp": 1700000000,
     "expires": 1700000300, "nonce": "<random hex>", "reply_to": "<digest or empty>",
     "hmac": "<hex HMAC-SHA256>"}

The payload is carried as the exact string that was signed, so no re-serialisation on the
far side can change a byte and break the signature. The MAC covers every field.

- ``expires`` is the sender's deadline; the receiver also caps it at ``max_age`` after
  ``timestamp``, so a sender cannot hand out a message valid for ever.
- ``nonce`` makes every envelope unique. The verifying side remembers the nonces it has
  accepted until they expire (:class:`ReplayCache`, on disk across restarts), so a
  message captured on the way is refused the second time instead of starting a second
  transfer.
- ``reply_to`` binds an answer to the request it answers: the digest of the request's
  envelope (:func:`message_digest`). The source of a move accepts an answer only if it
  names its own offer, so an answer recorded for another move cannot be slipped in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from herd.crypto.files import PRIVATE_MODE, write_atomic
from herd.errors import AuthenticationError, ValidationError

#: 256 bits, as hex.
SECRET_BYTES = 32
#: Default acceptance window, Ganeti's confd used the same five minutes.
MAX_AGE = 300.0
_HEX = re.compile(r"[0-9a-f]*")
_HEX_SECRET = re.compile(rf"(?:[0-9a-f]{{2}}){{{SECRET_BYTES},}}")
#: Bound into every MAC so a signature made here can never verify as some other protocol's.
_DOMAIN = b"herd-signed-message-v2"
#: Accepted nonces remembered at most; far above a cluster's moves in one ``MAX_AGE``.
REPLAY_CAPACITY = 4096


class ReplayCache:
    """Nonces of accepted messages, each kept until its message would expire anyway.

    With a ``path`` the nonces live in a SQLite file (mode 0600) and survive a restart:
    kept in memory only, a message captured on the wire could be replayed against a
    freshly restarted master within its validity window. A nonce is committed (synced)
    before :meth:`admit` returns, so no message is acted on before its nonce would
    survive a crash. Without a path the same tables live in a private in-memory
    database: for callers with no state directory (op contexts built without a master,
    tests), never for a master.

    Bounded: when full of live nonces, new messages are refused rather than old nonces
    forgotten, because forgetting one would reopen its replay window. Filling it takes
    thousands of validly signed messages within ``MAX_AGE``, i.e. the domain secret.
    Expired nonces are dropped at open and at every admit, so the file never grows past
    the bound. A ``holder`` (the job verifying the message) may verify its own message
    again, since a job that is retried or resumed, also after a restart, re-checks the
    offer it was submitted with.
    """

    #: The file's name in a master's state directory.
    FILE = "replay.db"

    def __init__(
        self,
        path: Path | None = None,
        *,
        capacity: int = REPLAY_CAPACITY,
        now: float | None = None,
    ) -> None:
        """``now`` is the clock for the pruning at open (tests inject it)."""
        self.capacity = capacity
        self._lock = threading.Lock()
        self._db = _open_nonces(path)
        with self._db:
            self._prune(time.time() if now is None else now)

    def admit(self, nonce: str, until: float, holder: str, now: float) -> None:
        """Record ``nonce`` as used until ``until``, or refuse it as a replay."""
        with self._lock, self._db:
            self._prune(now)
            seen = self._db.execute(
                "SELECT holder FROM nonces WHERE nonce = ?", (nonce,)
            ).fetchone()
            if seen is not None:
                if holder and seen[0] == holder:
                    return
                raise AuthenticationError(
                    "signed message replayed: it was already accepted once", nonce=nonce
                )
            (count,) = self._db.execute("SELECT COUNT(*) FROM nonces").fetchone()
            if count >= self.capacity:
                raise AuthenticationError(
                    f"too many signed messages in flight ({self.capacity}); retry later",
                    capacity=self.capacity,
                )
            self._db.execute("INSERT INTO nonces VALUES (?, ?, ?)", (nonce, until, holder))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _prune(self, now: float) -> None:
        """Forget nonces whose messages have expired: they can no longer be replayed."""
        self._db.execute("DELETE FROM nonces WHERE until < ?", (now,))


def _open_nonces(path: Path | None) -> sqlite3.Connection:
    """The nonce table, in ``path`` (created 0600 before SQLite writes a byte) or in memory.

    One connection serves every thread; the cache's lock serialises its use. WAL and
    ``synchronous=FULL`` make each admit's commit durable; SQLite gives the WAL and
    shared-memory files the database file's mode.
    """
    if path is None:
        db = sqlite3.connect(":memory:", check_same_thread=False)
    else:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_MODE))
        os.chmod(path, PRIVATE_MODE)
        db = sqlite3.connect(str(path), check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS nonces"
        " (nonce TEXT PRIMARY KEY, until REAL NOT NULL, holder TEXT NOT NULL)"
    )
    return db


def generate_domain_secret() -> str:
    return secrets.token_hex(SECRET_BYTES)


def save_domain_secret(path: Path, secret: str) -> None:
    write_atomic(Path(path), (_check_secret(secret) + "\n").encode("ascii"), PRIVATE_MODE)


def load_domain_secret(path: Path) -> str:
    """Read a secret file, rejecting one that is truncated or not ours."""
    return _check_secret(Path(path).read_text(encoding="ascii").strip())


def sign_message(
    secret: str,
    message: Any,
    *,
    now: float | None = None,
    ttl: float = MAX_AGE,
    reply_to: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Wrap ``message`` (anything ``json.dumps`` takes) in a signed envelope valid for
    ``ttl`` seconds; ``reply_to`` is the envelope this one answers."""
    try:
        msg = json.dumps(message, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError("message", message, "JSON-serialisable data") from exc
    timestamp = int(time.time() if now is None else now)
    envelope: dict[str, Any] = {
        "msg": msg,
        "timestamp": timestamp,
        "expires": timestamp + int(ttl),
        "nonce": secrets.token_hex(16),
        "reply_to": "" if reply_to is None else message_digest(reply_to),
    }
    envelope["hmac"] = _mac(_check_secret(secret), _signed_bytes(envelope))
    return envelope


def verify_message(
    secret: str,
    envelope: Mapping[str, Any],
    *,
    max_age: float = MAX_AGE,
    now: float | None = None,
    reply_to: Mapping[str, Any] | None = None,
    replay: ReplayCache | None,
    holder: str = "",
) -> Any:
    """Return the payload of ``envelope`` if it was signed with ``secret``, has not
    expired, was not accepted before (by anyone but ``holder``) and, for an answer,
    answers the request ``reply_to``.

    The MAC is checked before anything else so a forged field is reported as a forgery.
    Messages from further than ``max_age`` in the future are refused too: the sender's
    clock being that far ahead would otherwise stretch the replay window. ``replay`` has
    no default: each verifier names the cache it answers to (an op passes ``ctx.replay``,
    the master's persistent one), so none falls back to a cache that a restart empties;
    ``None`` is only for a caller that keeps no state (tests of the other checks).
    """
    key = _check_secret(secret)
    _fields(envelope)
    if not hmac.compare_digest(_mac(key, _signed_bytes(envelope)), envelope["hmac"]):
        raise AuthenticationError(
            "signature mismatch: message altered or signed with another domain secret"
        )
    now = time.time() if now is None else now
    timestamp = envelope["timestamp"]
    until = min(envelope["expires"], timestamp + max_age)
    age = now - timestamp
    if now > until:
        raise AuthenticationError(
            f"signed message expired: {age:.0f}s old, valid for {until - timestamp:.0f}s",
            age=age,
            max_age=max_age,
        )
    if age < -max_age:
        raise AuthenticationError(
            f"signed message dated {-age:.0f}s in the future, limit {max_age:.0f}s",
            age=age,
            max_age=max_age,
        )
    _check_reply(envelope["reply_to"], reply_to)
    if replay is not None:
        replay.admit(envelope["nonce"], until, holder, now)
    return json.loads(envelope["msg"])


def message_digest(envelope: Mapping[str, Any]) -> str:
    """What an answer names to say which message it answers: a hash of all it signed."""
    _fields(envelope)
    return hashlib.sha256(_signed_bytes(envelope)).hexdigest()


def _check_reply(named: str, request: Mapping[str, Any] | None) -> None:
    """An answer must name the request it is checked against, and a request nothing."""
    if request is None:
        if named:
            raise AuthenticationError("signed message is an answer, where a request was expected")
        return
    if not hmac.compare_digest(named, message_digest(request)):
        raise AuthenticationError(
            "signed answer does not answer this offer: it names another message or none"
        )


#: Field types of an envelope, in the order they are signed (``hmac`` is not).
_ENVELOPE = {
    "msg": str,
    "timestamp": int,
    "expires": int,
    "nonce": str,
    "reply_to": str,
    "hmac": str,
}


def _fields(envelope: Mapping[str, Any]) -> None:
    """Check the envelope's shape, naming the first field that is missing or mistyped."""
    if not isinstance(envelope, Mapping):
        raise ValidationError("envelope", envelope, "an object with " + ", ".join(_ENVELOPE))
    for name, kind in _ENVELOPE.items():
        value = envelope.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValidationError(f"envelope.{name}", value, f"a {kind.__name__}")
    for name in ("nonce", "reply_to"):
        if not _HEX.fullmatch(envelope[name]):
            raise ValidationError(f"envelope.{name}", envelope[name], "lowercase hex")


def _signed_bytes(envelope: Mapping[str, Any]) -> bytes:
    # NUL separators keep field boundaries unambiguous (msg last: only it may hold
    # anything). surrogatepass: a hostile envelope's lone surrogates must fail the MAC,
    # not crash.
    fields = [str(envelope[n]) for n in _ENVELOPE if n not in ("msg", "hmac")]
    fields.append(envelope["msg"])
    return b"\0".join([_DOMAIN, *(f.encode("utf-8", "surrogatepass") for f in fields)])


def _mac(secret: str, data: bytes) -> str:
    return hmac.new(bytes.fromhex(secret), data, hashlib.sha256).hexdigest()


def _check_secret(secret: str) -> str:
    if not isinstance(secret, str) or not _HEX_SECRET.fullmatch(secret):
        raise ValidationError(
            "secret", "<redacted>", f"lowercase hex of at least {SECRET_BYTES} bytes"
        )
    return secret
