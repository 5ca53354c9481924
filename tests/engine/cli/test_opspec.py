"""The shipped op spec matches the ops, and the CLI starts without importing them."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from herd.cli.main import build_parser, main
from herd.cli.opspec import SPEC_PATH, WRITE_COMMAND, build_spec, dumps


def test_the_shipped_spec_matches_the_registry() -> None:
    with open(SPEC_PATH, encoding="utf-8") as fh:
        shipped = fh.read()
    assert shipped == dumps(build_spec()), f"opspec.json is stale: run {WRITE_COMMAND}"


def test_parsing_a_command_imports_no_op_and_no_crypto() -> None:
    code = (
        "import sys, json, herd.cli.main as m;"
        "m.build_parser().parse_args(['debug', 'delay', '0']);"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    mods = json.loads(out.stdout)
    heavy = [m for m in mods if m.split(".")[0] in ("paramiko", "cryptography")]
    heavy += [m for m in mods if m.startswith(("herd.ops", "herd.master", "herd.api"))]
    assert heavy == []


def _commands() -> list[list[str]]:
    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        found = [prefix]
        for action in subs:
            for name, child in action.choices.items():
                found += walk(child, [*prefix, name])
        return found

    return walk(build_parser(), [])


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_every_help_works(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip()
