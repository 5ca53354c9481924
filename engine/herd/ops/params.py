"""Declarative op parameters, validated before a job is accepted.

Every op lists its parameters once; the API, the CLI (which builds its flags from the
same list) and the docs all read that list, so a parameter cannot be accepted in one
place and unknown in another. Validation errors always name the field, the value and
what would have been allowed.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from herd.errors import ValidationError

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "a list",
    dict: "a mapping",
}

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Param:
    """One parameter of an op.

    ``default`` is deep-copied for each use, so mutable defaults are safe. ``choices``
    applies to the value, or to every item when ``type`` is ``list``.
    """

    name: str
    type: type
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] | None = None
    item_type: type | None = None
    minimum: float | None = None
    maximum: float | None = None
    check: Callable[[Any], str | None] | None = None
    allowed: str | None = None
    doc: str = ""
    cli_positional: bool = False
    secret: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def describe_allowed(self) -> str:
        """The human text of what this field accepts, used in every error about it."""
        if self.allowed:
            return self.allowed
        if self.choices is not None:
            what = ", ".join(repr(c) for c in self.choices)
            return f"one of {what}" if self.type is not list else f"a list of {what}"
        text = _TYPE_NAMES.get(self.type, self.type.__name__)
        if self.type is list and self.item_type is not None:
            text = f"a list of {_TYPE_NAMES.get(self.item_type, self.item_type.__name__)}s"
        if self.minimum is not None and self.maximum is not None:
            text += f" from {self.minimum:g} to {self.maximum:g}"
        elif self.minimum is not None:
            text += f" of at least {self.minimum:g}"
        return text

    def validate(self, value: Any, prefix: str = "") -> Any:
        """Return the value, normalised (ints accepted as floats), or raise ValidationError."""
        fname = prefix + self.name
        if not _is_type(value, self.type):
            raise ValidationError(fname, value, self.describe_allowed())
        if self.type is float:
            value = float(value)
        if self.type is list:
            value = list(value)
            for item in value:
                if self.item_type is not None and not _is_type(item, self.item_type):
                    raise ValidationError(fname, value, self.describe_allowed())
                if self.choices is not None and item not in self.choices:
                    raise ValidationError(fname, item, self.describe_allowed())
        elif self.choices is not None and value not in self.choices:
            raise ValidationError(fname, value, self.describe_allowed())
        if self.type in (int, float):
            if self.minimum is not None and value < self.minimum:
                raise ValidationError(fname, value, self.describe_allowed())
            if self.maximum is not None and value > self.maximum:
                raise ValidationError(fname, value, self.describe_allowed())
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ValidationError(fname, value, self.allowed or problem)
        return value


def _is_type(value: Any, wanted: type) -> bool:
    # bool is an int subclass in Python; a JSON ``true`` must never pass as a count.
    if wanted in (int, float) and isinstance(value, bool):
        return False
    if wanted is float:
        return isinstance(value, (int, float))
    return isinstance(value, wanted)


def validate_params(
    params: tuple[Param, ...], given: Mapping[str, Any], prefix: str = "", op_id: str = ""
) -> dict[str, Any]:
    """Check ``given`` against ``params``: unknown fields, missing ones, types, ranges.

    Unknown fields are refused rather than ignored: an option that nobody reads must not
    look as if it had been honoured.
    """
    known = {p.name: p for p in params}
    for key in given:
        if key not in known:
            allowed = ", ".join(sorted(known)) or "no parameters"
            where = f" of op '{op_id}'" if op_id else ""
            raise ValidationError(
                prefix + key,
                given[key],
                allowed,
                message=f"unknown field '{prefix}{key}'{where}; allowed fields: {allowed}",
            )
    out: dict[str, Any] = {}
    for p in params:
        if given.get(p.name) is not None:
            out[p.name] = p.validate(given[p.name], prefix)
        elif p.required:
            raise ValidationError(
                prefix + p.name,
                None,
                p.describe_allowed(),
                message=f"missing required field '{prefix}{p.name}': "
                f"expected {p.describe_allowed()}",
            )
        else:
            out[p.name] = copy.deepcopy(p.default)
    return out


def check_name(value: str) -> str | None:
    """Names of clusters, nodes, groups and instances: DNS-label-like, lower case."""
    if NAME_RE.match(value):
        return None
    return "a lower-case name of letters, digits, '-' and '.', 1-63 characters"


def check_ip(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "an IPv4 or IPv6 address"
    return None


def check_port_range(value: str) -> str | None:
    m = re.fullmatch(r"(\d+)-(\d+)", value)
    if m and 1024 <= int(m.group(1)) < int(m.group(2)) <= 65535:
        return None
    return "a port range 'FIRST-LAST' with 1024 <= FIRST < LAST <= 65535"


PRIORITY = Param(
    "priority",
    int,
    default=0,
    minimum=-20,
    maximum=19,
    doc="job priority: lower runs first (high -10, normal 0, low 10)",
)
