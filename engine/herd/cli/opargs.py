"""Command-line flags built from each op's parameter list.

Deriving the CLI from the ops' own ``PARAMS`` means a new op parameter is on the command
line the moment it exists, with the same name, type and help as in the API and docs.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from herd.errors import ValidationError
from herd.ops.params import Param


def flag(param: Param) -> str:
    return "--" + param.name.replace("_", "-")


def add_op_arguments(parser: argparse.ArgumentParser, params: tuple[Param, ...]) -> None:
    for p in params:
        help_text = f"{p.doc} ({p.describe_allowed()})" if p.doc else p.describe_allowed()
        if p.cli_positional:
            parser.add_argument(
                p.name, nargs=None if p.required else "?", help=help_text, metavar=p.name.upper()
            )
        elif p.type is bool:
            parser.add_argument(
                flag(p),
                dest=p.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            parser.add_argument(
                flag(p),
                dest=p.name,
                default=None,
                help=help_text,
                metavar=p.name.upper(),
                required=p.required,
            )


def collect_op_params(args: argparse.Namespace, params: tuple[Param, ...]) -> dict[str, Any]:
    """Only what the user gave: omitted flags stay unset so the op's defaults apply."""
    out: dict[str, Any] = {}
    for p in params:
        raw = getattr(args, p.name, None)
        if raw is None:
            continue
        out[p.name] = raw if p.type is bool else convert(p, raw)
    return out


def convert(p: Param, raw: str) -> Any:
    """Turn command-line text into the parameter's type; the op validates the value."""
    try:
        if p.type is int:
            return int(raw)
        if p.type is float:
            return float(raw)
        if p.type is list and raw.lstrip().startswith("["):
            value = json.loads(raw)
            if not isinstance(value, list):
                raise ValueError("not a list")
            return value
        if p.type is list:
            items = [i for i in raw.split(",") if i != ""]
            return (
                [convert(Param(p.name, p.item_type), i) for i in items]
                if p.item_type in (int, float)
                else items
            )
        if p.type is dict:
            return parse_mapping(raw)
    except ValueError:
        raise ValidationError(p.name, raw, p.describe_allowed()) from None
    return raw


def parse_mapping(raw: str) -> dict[str, Any]:
    """``a=1,b=x`` or ``kvm:a=1,b=2`` (nested one level) or a JSON object."""
    raw = raw.strip()
    if raw.startswith("{"):
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ValueError("not a mapping")
        return value
    outer = None
    if ":" in raw.split("=", 1)[0]:
        outer, raw = raw.split(":", 1)
    inner: dict[str, Any] = {}
    for part in filter(None, raw.split(",")):
        if "=" not in part:
            raise ValueError(f"expected key=value, got {part!r}")
        key, value = part.split("=", 1)
        inner[key.strip()] = scalar(value.strip())
    return {outer: inner} if outer else inner


def scalar(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
