"""Command-line flags built from each op's parameter list.

Deriving the CLI from the ops' own ``PARAMS`` means a new op parameter is on the command
line the moment it exists, with the same name, type and help as in the API and docs. The
CLI reads them from the cached spec (``herd.cli.opspec``), not from the ops, so that it
starts without importing the op catalog.

A secret (``Param(secret=True)``, and the API token) is never taken as a flag's value:
the command line of every process is readable by every local user (``ps``). It comes
from ``--NAME-file FILE`` (``-`` reads stdin) or the environment variable ``HERD_NAME``;
the plain ``--NAME`` is refused with a message pointing there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from herd.cli.opspec import ParamSpec
from herd.errors import ValidationError


def flag(param: ParamSpec) -> str:
    return "--" + param.name.replace("_", "-")


def secret_env(name: str) -> str:
    """The environment variable a secret may come from: ``domain_secret`` → HERD_DOMAIN_SECRET."""
    return "HERD_" + name.upper()


class RefuseSecretValue(argparse.Action):
    """``--NAME VALUE`` for a secret: refused before anything is sent, saying what to use."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        dest = self.dest
        parser.error(
            f"{option_string} is not accepted: a value on the command line is visible to "
            f"every local user (ps); use --{dest.replace('_', '-')}-file FILE ('-' reads "
            f"stdin) or the environment variable {secret_env(dest)}"
        )


def add_secret_argument(parser: argparse.ArgumentParser, name: str, text: str) -> None:
    """``--NAME-file`` for the secret ``name``, and the refused ``--NAME``."""
    option = "--" + name.replace("_", "-")
    parser.add_argument(option, dest=name, action=RefuseSecretValue, help=argparse.SUPPRESS)
    parser.add_argument(
        option + "-file",
        dest=name + "_file",
        default=None,
        metavar="FILE",
        help=f"{text}: read from FILE ('-': stdin), or set {secret_env(name)}",
    )


def read_secret(args: argparse.Namespace, name: str) -> str | None:
    """The secret ``name`` from its ``--NAME-file`` or the environment, None if neither."""
    path = getattr(args, name + "_file", None)
    if path is None:
        return os.environ.get(secret_env(name)) or None
    field = f"--{name.replace('_', '-')}-file"
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(field, path, f"a readable text file ({exc})") from None
    value = text.strip()
    if not value:
        raise ValidationError(field, path, "a file holding the value (this one is empty)")
    return value


def help_text(text: str) -> str:
    """Text from op docs made safe for argparse, which %-formats every help string."""
    return text.replace("%", "%%")


def add_op_arguments(parser: argparse.ArgumentParser, params: tuple[ParamSpec, ...]) -> None:
    for p in params:
        text = help_text(f"{p.doc} ({p.allowed})" if p.doc else p.allowed)
        if p.secret:
            add_secret_argument(parser, p.name, text)
        elif p.cli_positional:
            parser.add_argument(
                p.name, nargs=None if p.required else "?", help=text, metavar=p.name.upper()
            )
        elif p.type == "bool":
            parser.add_argument(
                flag(p),
                dest=p.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=text,
            )
        else:
            parser.add_argument(
                flag(p),
                dest=p.name,
                default=None,
                help=text,
                metavar=p.name.upper(),
                required=p.required,
            )


def collect_op_params(args: argparse.Namespace, params: tuple[ParamSpec, ...]) -> dict[str, Any]:
    """Only what the user gave: omitted flags stay unset so the op's defaults apply."""
    out: dict[str, Any] = {}
    for p in params:
        raw = read_secret(args, p.name) if p.secret else getattr(args, p.name, None)
        if raw is None:
            continue
        out[p.name] = raw if p.type == "bool" else convert(p, raw)
    return out


def convert(p: ParamSpec, raw: str) -> Any:
    """Turn command-line text into the parameter's type; the op validates the value."""
    try:
        if p.type in _NUMBERS:
            return _NUMBERS[p.type](raw)
        if p.type == "list" and raw.lstrip().startswith("["):
            value = json.loads(raw)
            if not isinstance(value, list):
                raise ValueError("not a list")
            return value
        if p.type == "list":
            items = [i for i in raw.split(",") if i != ""]
            number = _NUMBERS.get(p.item_type or "")
            return [number(i) for i in items] if number else items
        if p.type == "dict":
            return parse_mapping(raw)
    except ValueError:
        raise ValidationError(p.name, raw, p.allowed) from None
    return raw


_NUMBERS: dict[str, type[int] | type[float]] = {"int": int, "float": float}


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
