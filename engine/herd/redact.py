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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from herd.ops.params import Param

REDACTED = "<redacted>"

#: Secret strings shorter than this are only hidden where they are a whole value, not cut
#: out of free text: replacing a two-letter string everywhere would garble every log line.
MIN_SCRUB_LENGTH = 8


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
    it cut out, which also covers a secret quoted in an error message.
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
    return value


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
    found.discard("")
    found.discard(REDACTED)
    return found


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
