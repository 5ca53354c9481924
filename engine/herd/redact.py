"""Hiding secrets from every reader, driven by what the code declares secret.

Two declarations say what is secret, each beside the thing it describes:

* an op parameter: ``Param(..., secret=True)`` (the domain secret of ``cluster.modify``,
  the whole dump given to ``config.restore``, a move's signed offer);
* a field of a stored object: ``secret()`` in :mod:`herd.config.model` for a whole field
  (the cluster domain secret), ``secret_keys=`` metadata for keys inside a mapping field
  (a DRBD disk's shared secret in ``Disk.params``).

Everything that leaves the master (API answers, stored jobs, job logs, results and errors,
the CLI and the Ansible modules, which print what the API gives them) goes through the
functions here, so a value is hidden the same way wherever it would have shown. What is
hidden is replaced by :data:`REDACTED` rather than dropped: a reader still sees that the
field exists, and a document that went through redaction can never be mistaken for a
complete one (``config.restore`` refuses it).

One kind of secret needs no declaration: private key material (a PEM ``PRIVATE KEY``
block) is recognisable by its armour, and is cut out of every string that passes here,
wherever it came from (a node's error quoting a key file, an SSH library's message).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from herd.errors import HerdError
    from herd.ops.params import Param

REDACTED = "<redacted>"
#: Values found where a secret belongs that are no secret: nothing to cut out of text.
_NO_SECRETS = frozenset({"", REDACTED})

#: Secret strings shorter than this are only hidden where they are a whole value, not cut
#: out of free text: replacing a two-letter string everywhere would garble every log line.
MIN_SCRUB_LENGTH = 8

#: A PEM private key (RSA, EC, DSA, OPENSSH, ENCRYPTED, PKCS#8 ...): its armour lines are
#: kept so a reader sees what was hidden. A block cut short (a bounded stderr tail, a
#: truncated message) is hidden up to the end of the text, and a tail that starts inside a
#: key loses the base64 lines before its END line.
_KEY_MARK = "PRIVATE KEY-----"
_PEM_BLOCK = re.compile(
    r"(?P<begin>-----BEGIN (?P<kind>[A-Z0-9 ]*PRIVATE KEY)-----)"
    r".*?(?P<end>-----END (?P=kind)-----|\Z)",
    re.DOTALL,
)
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_PEM_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY-----")
_BASE64_LINE = re.compile(r"[ \t]*[A-Za-z0-9+/=]+[ \t]*\r?")


def secret_names(params: Iterable[Param]) -> frozenset[str]:
    """The names of the parameters declared ``secret=True``."""
    return frozenset(p.name for p in params if p.secret)


def redact_params(params: Iterable[Param], values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with every given secret parameter replaced by :data:`REDACTED`.

    A secret left unset (``None``) stays ``None``, so a reader can tell "not given" from
    "given and hidden".
    """
    hidden = secret_names(params)
    return {k: REDACTED if k in hidden and v is not None else v for k, v in values.items()}


def split_params(
    params: Iterable[Param], values: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the redacted parameters, the secret ones alone): what may be stored with the job
    and what must be kept apart from it until the job ends."""
    hidden = secret_names(params)
    secrets = {k: v for k, v in values.items() if k in hidden and v is not None}
    return redact_params(params, values), secrets


def scrub(value: Any, keys: frozenset[str], secrets: Iterable[str] = ()) -> Any:
    """A copy of a free-form document (a result, an error, log data) with secrets hidden.

    Under a key in ``keys`` every leaf becomes :data:`REDACTED` while the shape stays, so
    ``{"domain_secret": {"before": a, "after": b}}`` still reads as a change; any string
    anywhere that contains one of ``secrets`` (the job's own secret parameter values) has
    it cut out, which also covers a secret quoted in an error message; private key
    material is cut out of every string (see :func:`cut_key_material`).
    """
    needles = sorted({s for s in secrets if len(s) >= MIN_SCRUB_LENGTH}, key=len, reverse=True)
    exact = frozenset(secrets)
    return _scrub(value, keys, needles, exact, hide=False)


def _scrub(
    value: Any, keys: frozenset[str], needles: list[str], exact: frozenset[str], hide: bool
) -> Any:
    if isinstance(value, Mapping):
        return {k: _scrub(v, keys, needles, exact, hide or k in keys) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, keys, needles, exact, hide) for v in value]
    if hide and value is not None:
        return REDACTED
    if isinstance(value, str):
        if value in exact:
            return REDACTED
        for needle in needles:
            value = value.replace(needle, REDACTED)
        value = cut_key_material(value)
    return value


def cut_key_material(text: str) -> str:
    """``text`` with the body of every PEM private key replaced by :data:`REDACTED`.

    A plain substring test first: this runs on every string of every job log line, and
    almost none holds a key.
    """
    if _KEY_MARK not in text:
        return text
    text = _cut_headless_key(text)
    return _PEM_BLOCK.sub(lambda m: f"{m['begin']}{REDACTED}{m['end']}", text)


def _cut_headless_key(text: str) -> str:
    """``text`` without the base64 lines before an END line that no BEGIN line precedes:
    a bounded tail that starts inside a key. Walks back line by line from that END only,
    so the cost stays linear however many lines the text has."""
    end = _PEM_END.search(text)
    begin = _PEM_BEGIN.search(text)
    if end is None or (begin is not None and begin.start() < end.start()):
        return text
    lines = text[: end.start()].split("\n")
    if lines[-1].strip():
        return text
    keep = len(lines) - 1
    while keep > 0 and _BASE64_LINE.fullmatch(lines[keep - 1]):
        keep -= 1
    if keep == len(lines) - 1:
        return text
    head = "".join(f"{line}\n" for line in lines[:keep])
    return f"{head}{REDACTED}{text[end.start() :]}"


def scrub_error(error: HerdError, keys: frozenset[str], secrets: Iterable[str]) -> HerdError:
    """``error`` itself, its message and details scrubbed in place (see :func:`scrub`).

    In place rather than a copy, so whoever catches it still gets its own class, and the
    traceback chain holds no second, unscrubbed copy of the message.
    """
    error.message = scrub(error.message, keys, secrets)
    error.details = scrub(error.details, keys, secrets)
    error.args = (error.message,)
    return error


def secret_strings(
    params: Iterable[Param], values: Mapping[str, Any], keys: frozenset[str]
) -> set[str]:
    """The actual secret strings among ``values``: every secret parameter given as a string,
    and, inside a secret parameter that is a document (a dump), the leaves under ``keys``.

    A dump's names and numbers are not secret; only these strings are cut out of logs.
    """
    found: set[str] = set()
    for name in secret_names(params):
        value = values.get(name)
        if isinstance(value, str):
            found.add(value)
        elif value is not None:
            found |= _leaves_under(value, keys, False)
    return found - _NO_SECRETS


def secret_leaves(value: Any, keys: frozenset[str]) -> set[str]:
    """The strings under ``keys`` anywhere in ``value`` (a DRBD disk's secret in the args
    of a node call, say): what to cut out of free text that may quote them."""
    return _leaves_under(value, keys, False) - _NO_SECRETS


def _leaves_under(value: Any, keys: frozenset[str], inside: bool) -> set[str]:
    if isinstance(value, Mapping):
        return {s for k, v in value.items() for s in _leaves_under(v, keys, inside or k in keys)}
    if isinstance(value, (list, tuple)):
        return {s for v in value for s in _leaves_under(v, keys, inside)}
    return {value} if inside and isinstance(value, str) else set()


def find_redacted(
    value: Any, keys: frozenset[str], path: str = "", inside: bool = False
) -> str | None:
    """The path of the first :data:`REDACTED` marker under one of ``keys``, or None.

    A secret holding the marker went through redaction and lost its real value: the
    document must not be written back as if it were whole. A marker anywhere else is just
    a string (a hypervisor or tag that happens to read "<redacted>"), so only the declared
    secret keys are looked at.
    """
    if inside and value == REDACTED:
        return path or "value"
    if isinstance(value, Mapping):
        items: Iterable[tuple[str, Any, bool]] = (
            (f"{path}.{k}" if path else str(k), v, inside or k in keys) for k, v in value.items()
        )
    elif isinstance(value, (list, tuple)):
        items = ((f"{path}[{i}]", v, inside) for i, v in enumerate(value))
    else:
        return None
    for where, item, under in items:
        found = find_redacted(item, keys, where, under)
        if found:
            return found
    return None
