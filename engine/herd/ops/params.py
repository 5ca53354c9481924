"""Declarative op parameters, validated before a job is accepted.

Every op lists its parameters once; the API, the CLI (which builds its flags from the
same list) and the docs all read that list, so a parameter cannot be accepted in one
place and unknown in another. Validation errors always name the field, the value and
what would have been allowed.
"""

from __future__ import annotations

import builtins
import copy
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
#: Ganeti OS names and variants: they become directory names on the nodes.
OS_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(\+[A-Za-z0-9][A-Za-z0-9._-]{0,63})?$")

#: The integers every layer can hold: SQLite's INTEGER, the job and config stores, the
#: node agents. A larger one is bad input, refused here rather than overflowing there.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


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
    # ``builtins``: the field ``type`` above shadows the name in the class body.
    item_type: builtins.type | None = None
    minimum: float | None = None
    maximum: float | None = None
    check: Callable[[Any], str | None] | None = None
    allowed: str | None = None
    doc: str = ""
    cli_positional: bool = False
    secret: bool = False
    #: For mappings and lists whose items have rules of their own: called with the value
    #: and the field's full name, it raises a ValidationError naming the inner field
    #: (``nics[1].mac``) and returns the value to keep.
    structure: Callable[[Any, str], Any] | None = None

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
            text += f" from {_number(self.minimum)} to {_number(self.maximum)}"
        elif self.minimum is not None:
            text += f" of at least {_number(self.minimum)}"
        elif self.maximum is not None:
            text += f" of at most {_number(self.maximum)}"
        return text

    def validate(self, value: Any, prefix: str = "") -> Any:
        """Return the value, normalised (ints accepted as floats), or raise ValidationError."""
        fname = prefix + self.name
        if not _is_type(value, self.type):
            raise ValidationError(fname, value, self.describe_allowed())
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
            check_bounds(value, fname)
            value = float(value) if self.type is float else value
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ValidationError(fname, value, self.allowed or problem)
        if self.structure is not None:
            value = self.structure(value, fname)
        return value


def _number(bound: float) -> str:
    """Bounds as people write them: 4194304, not 4.1943e+06."""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


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
            if isinstance(given[p.name], (dict, list)):
                check_bounds(given[p.name], prefix + p.name)
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


def check_bounds(value: Any, fname: str) -> None:
    """Refuse integers beyond 64 bits and non-finite numbers anywhere inside ``value``.

    JSON has no limit on digits, so without this a 400-digit size or id reaches SQLite
    or arithmetic that overflows, and the caller sees a 500 instead of their mistake.
    Walked without recursion: the depth of the input is the caller's choice.
    """
    pending: list[tuple[str, Any]] = [(fname, value)]
    while pending:
        where, item = pending.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and not INT_MIN <= item <= INT_MAX:
            raise ValidationError(where, item, "an integer from -2**63 to 2**63-1")
        if isinstance(item, float) and not math.isfinite(item):
            raise ValidationError(where, item, "a finite number")
        if isinstance(item, dict):
            pending.extend((f"{where}.{k}", v) for k, v in item.items())
        elif isinstance(item, list):
            pending.extend((f"{where}[{i}]", v) for i, v in enumerate(item))


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


def check_os_name(value: str) -> str | None:
    """'name' or 'name+variant': letters, digits, '.', '_', '-'; never a path."""
    if OS_NAME_RE.match(value):
        return None
    return "an OS name 'name' or 'name+variant' of letters, digits, '.', '_' and '-'"


#: Ganeti's bounds (MAX_TAG_LEN, MAX_TAGS_PER_OBJ): tags are labels, not a data store.
MAX_TAG_LEN = 128
MAX_TAGS_PER_OBJECT = 4096


def check_tags(value: list[str]) -> str | None:
    """The tags of one object: a bounded list of short, non-empty labels."""
    if len(value) > MAX_TAGS_PER_OBJECT:
        return f"at most {MAX_TAGS_PER_OBJECT} tags (got {len(value)})"
    for tag in value:
        if not 1 <= len(tag) <= MAX_TAG_LEN:
            return f"tags of 1 to {MAX_TAG_LEN} characters (one has {len(tag)})"
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
