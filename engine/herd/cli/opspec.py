"""The op catalog as the CLI needs it, cached in ``opspec.json`` beside this module.

Importing the ops to learn their flags would load every op and what they import
(paramiko, cryptography, the storage and hypervisor code): most of the CLI's start-up
time, spent before anything useful. The JSON file is generated from ``registry()`` by
``python3 -m herd.cli.opspec --write``; a unit test fails when it has drifted.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NamedTuple

SPEC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "opspec.json")
WRITE_COMMAND = "python3 -m herd.cli.opspec --write"


class ParamSpec(NamedTuple):
    """What the CLI knows of a ``herd.ops.params.Param``: no callables, just data.

    ``allowed`` is the Param's own ``describe_allowed()`` text, kept rather than
    recomputed so help and errors read exactly as the op's validation does.
    """

    name: str
    type: str
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] | None = None
    item_type: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    doc: str = ""
    allowed: str = ""
    cli_positional: bool = False
    secret: bool = False


class OpSpec(NamedTuple):
    """One op as the file has it; its parameters are read only when asked for, because a
    command line needs those of the one op it names (a few hundred in all otherwise)."""

    op_id: str
    summary: str
    raw_params: tuple[dict[str, Any], ...]

    @property
    def params(self) -> tuple[ParamSpec, ...]:
        return tuple(
            ParamSpec(**(p | {"choices": None if p["choices"] is None else tuple(p["choices"])}))
            for p in self.raw_params
        )


def build_spec() -> list[dict[str, Any]]:
    """The catalog from the ops themselves, as JSON-able data sorted by op id."""
    from herd.ops.base import registry

    return [
        {"op_id": op_id, "summary": cls.SUMMARY, "params": [_param(p) for p in cls.PARAMS]}
        for op_id, cls in sorted(registry().items())
    ]


def _param(p: Any) -> dict[str, Any]:
    return {
        "name": p.name,
        "type": p.type.__name__,
        "required": p.required,
        "default": p.default,
        "choices": None if p.choices is None else list(p.choices),
        "item_type": None if p.item_type is None else p.item_type.__name__,
        "minimum": p.minimum,
        "maximum": p.maximum,
        "doc": p.doc,
        "allowed": p.describe_allowed(),
        "cli_positional": p.cli_positional,
        "secret": p.secret,
    }


def dumps(spec: list[dict[str, Any]]) -> str:
    """The file's text: stable, so regenerating an unchanged catalog changes nothing."""
    return json.dumps(spec, indent=1, sort_keys=True) + "\n"


def write_spec(path: str = SPEC_PATH) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(dumps(build_spec()))


def load_spec(path: str = SPEC_PATH) -> list[OpSpec]:
    with open(path, encoding="utf-8") as fh:
        raw = json.load(fh)
    return [OpSpec(op["op_id"], op["summary"], tuple(op["params"])) for op in raw]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["--write"]:
        print(f"usage: {WRITE_COMMAND}", file=sys.stderr)
        return 2
    write_spec()
    print(f"wrote {SPEC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
