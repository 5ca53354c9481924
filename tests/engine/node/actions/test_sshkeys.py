"""The cluster key's authorized_keys line: restricted to herd-node, edited idempotently."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.errors import ValidationError
from herd.node.actions.registry import NodeContext, dispatch
from herd.node.actions.sshkeys import FORCED_COMMAND, KEY_OPTIONS
from herd.rpc.client import DEFAULT_COMMAND

KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHnXbrj5Q0kO5n1mD3eVXg8PQm4Hq6bQbq1Rl1Zq8ZyX herd-cluster"
)
BLOB = " ".join(KEY.split()[:2])
OPERATOR = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorOperatorOperatorOperatorOperatorOp op@desk"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def keys_file(home: Path) -> Path:
    return home / ".ssh" / "authorized_keys"


def call(name: str, key: str = KEY) -> dict[str, object]:
    return dispatch(NodeContext(root=Path("/nonexistent")), name, {"key": key})


def test_the_forced_command_is_the_one_the_master_runs() -> None:
    assert FORCED_COMMAND == DEFAULT_COMMAND
    assert KEY_OPTIONS.startswith("restrict,")


def test_authorize_writes_one_restricted_line_and_is_idempotent(home: Path) -> None:
    assert call("ssh_key_authorize") == {"changed": True, "added": True}
    assert keys_file(home).read_text() == f'restrict,command="herd-node --serve" {KEY}\n'
    assert keys_file(home).stat().st_mode & 0o777 == 0o600
    assert call("ssh_key_authorize") == {"changed": False, "added": False}


def test_an_unrestricted_line_from_before_is_replaced_and_others_kept(home: Path) -> None:
    keys_file(home).parent.mkdir()
    keys_file(home).write_text(f"{OPERATOR}\n{KEY}\n")
    assert call("ssh_key_authorize") == {"changed": True, "added": False}
    assert keys_file(home).read_text().splitlines() == [OPERATOR, f"{KEY_OPTIONS} {KEY}"]


def test_revoke_removes_every_line_of_the_key_only(home: Path) -> None:
    keys_file(home).parent.mkdir()
    keys_file(home).write_text(f"{KEY}\n{OPERATOR}\n{KEY_OPTIONS} {KEY}\n")
    assert call("ssh_key_revoke") == {"changed": True}
    assert keys_file(home).read_text() == f"{OPERATOR}\n"
    assert call("ssh_key_revoke") == {"changed": False}


@pytest.mark.parametrize(
    "bad",
    [
        f"{KEY}\nssh-ed25519 AAAAother",  # a second line
        f'command="/bin/sh" {KEY}',  # options of its own
        f"{BLOB} comment\rmore",
        "ssh-dss AAAAB3NzaC1kc3M= old",
        "",
    ],
)
def test_key_text_cannot_add_lines_or_options(home: Path, bad: str) -> None:
    with pytest.raises(ValidationError) as err:
        call("ssh_key_authorize", bad)
    assert err.value.details["field"] == "key"
    assert not keys_file(home).exists()
