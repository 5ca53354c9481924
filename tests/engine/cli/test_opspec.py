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


def _tree() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every command of the whole tree (as tests and docs build it), by its words."""

    def walk(parser: argparse.ArgumentParser, prefix: tuple[str, ...]) -> None:
        found[prefix] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, (*prefix, name))

    found: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    walk(build_parser(), ())
    return found


TREE = _tree()


@pytest.mark.parametrize("command", list(TREE), ids=" ".join)
def test_every_help_works(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    """Also that the branch main() builds for argv alone reads as in the whole tree."""
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.strip()
    assert out == TREE[command].format_help()
