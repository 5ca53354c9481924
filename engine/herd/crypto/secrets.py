"""The cluster domain secret and messages signed with it.

Clusters that may move instances between each other share one random "domain secret"
(Ganeti's cluster domain secret). Before any certificate or disk byte crosses between
clusters, each side signs what it offers (its CA certificate, the transfer endpoint) with
an HMAC under that secret; the other side accepts the offer only if the signature checks
out and the message is recent. The secret itself never travels.

A signed message is a JSON-able envelope::

    {"msg": "<canonical JSON of the payload>", "timestamp": 1700000000,
     "salt": "<random hex>", "hmac": "<hex HMAC-SHA256>"}

The payload is carried as the exact string that was signed, so no re-serialisation on the
far side can change a byte and break the signature. The timestamp bounds replay to
``max_age`` seconds; the salt makes every envelope unique so a receiver that must reject
replays inside that window can remember the salts it has seen.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
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
_HEX_SECRET = re.compile(rf"^(?:[0-9a-f]{{2}}){{{SECRET_BYTES},}}$")
#: Bound into every MAC so a signature made here can never verify as some other protocol's.
_DOMAIN = b"herd-signed-message-v1"


def generate_domain_secret() -> str:
    return secrets.token_hex(SECRET_BYTES)


def save_domain_secret(path: Path, secret: str) -> None:
    write_atomic(Path(path), (_check_secret(secret) + "\n").encode("ascii"), PRIVATE_MODE)


def load_domain_secret(path: Path) -> str:
    """Read a secret file, rejecting one that is truncated or not ours."""
    return _check_secret(Path(path).read_text(encoding="ascii").strip())


def sign_message(secret: str, message: Any, *, now: float | None = None) -> dict[str, Any]:
    """Wrap ``message`` (anything ``json.dumps`` takes) in a signed, timestamped envelope."""
    try:
        msg = json.dumps(message, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError("message", message, "JSON-serialisable data") from exc
    timestamp = int(time.time() if now is None else now)
    salt = secrets.token_hex(16)
    return {
        "msg": msg,
        "timestamp": timestamp,
        "salt": salt,
        "hmac": _mac(_check_secret(secret), msg, timestamp, salt),
    }


def verify_message(
    secret: str,
    envelope: Mapping[str, Any],
    *,
    max_age: float = MAX_AGE,
    now: float | None = None,
) -> Any:
    """Return the payload of ``envelope`` if it was signed with ``secret`` recently.

    The MAC is checked before the clock so a forged timestamp is reported as a forgery.
    Messages from further than ``max_age`` in the future are refused too: the sender's
    clock being that far ahead would otherwise stretch the replay window.
    """
    key = _check_secret(secret)
    msg, timestamp, salt, mac = _fields(envelope)
    if not hmac.compare_digest(_mac(key, msg, timestamp, salt), mac):
        raise AuthenticationError(
            "signature mismatch: message altered or signed with another domain secret"
        )
    age = (time.time() if now is None else now) - timestamp
    if age > max_age:
        raise AuthenticationError(
            f"signed message expired: {age:.0f}s old, limit {max_age:.0f}s",
            age=age,
            max_age=max_age,
        )
    if age < -max_age:
        raise AuthenticationError(
            f"signed message dated {-age:.0f}s in the future, limit {max_age:.0f}s",
            age=age,
            max_age=max_age,
        )
    return json.loads(msg)


def _fields(envelope: Mapping[str, Any]) -> tuple[str, int, str, str]:
    """Pull the envelope apart, naming the first field that is missing or mistyped."""
    if not isinstance(envelope, Mapping):
        raise ValidationError("envelope", envelope, "an object with msg, timestamp, salt, hmac")
    expected = {"msg": str, "timestamp": int, "salt": str, "hmac": str}
    for name, kind in expected.items():
        value = envelope.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValidationError(f"envelope.{name}", value, f"a {kind.__name__}")
    return envelope["msg"], envelope["timestamp"], envelope["salt"], envelope["hmac"]


def _mac(secret: str, msg: str, timestamp: int, salt: str) -> str:
    # NUL separators keep field boundaries unambiguous: no salt/msg split can collide.
    # surrogatepass: a hostile envelope's lone surrogates must fail the MAC, not crash.
    fields = [str(timestamp), salt, msg]
    data = b"\0".join([_DOMAIN, *(f.encode("utf-8", "surrogatepass") for f in fields)])
    return hmac.new(bytes.fromhex(secret), data, hashlib.sha256).hexdigest()


def _check_secret(secret: str) -> str:
    if not isinstance(secret, str) or not _HEX_SECRET.match(secret):
        raise ValidationError(
            "secret", "<redacted>", f"lowercase hex of at least {SECRET_BYTES} bytes"
        )
    return secret
