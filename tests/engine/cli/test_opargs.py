"""Secrets on the command line: only from a file, stdin or the environment, never argv."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from herd.cli.main import build_parser
from herd.cli.opargs import collect_op_params, read_secret
from herd.errors import ValidationError

SECRET = "ab" * 32


def init_params(*argv: str) -> dict[str, object]:
    args = build_parser().parse_args(["cluster", "init", "c1", "--master-node", "n1", *argv])
    return collect_op_params(args, args.op_params)


@pytest.mark.parametrize(
    ("argv", "file_flag", "env"),
    [
        (["cluster", "init", "c1", "--domain-secret", SECRET], "--domain-secret-file", "DOMAIN"),
        (["--api-token", "herd_abc", "node", "list"], "--api-token-file", "API_TOKEN"),
    ],
)
def test_a_secret_given_as_a_value_is_refused_pointing_at_the_file_flag(
    argv: list[str], file_flag: str, env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "visible to every local user" in err
    assert file_flag in err and f"HERD_{env}" in err


def test_secret_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HERD_DOMAIN_SECRET", raising=False)
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    assert init_params("--domain-secret-file", str(path))["domain_secret"] == SECRET


def test_secret_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET + "\n"))
    assert init_params("--domain-secret-file", "-")["domain_secret"] == SECRET


def test_secret_from_the_environment_and_none_when_not_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HERD_DOMAIN_SECRET", raising=False)
    assert "domain_secret" not in init_params()
    monkeypatch.setenv("HERD_DOMAIN_SECRET", SECRET)
    assert init_params()["domain_secret"] == SECRET


def test_the_file_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERD_API_TOKEN", "from-env")
    path = tmp_path / "token"
    path.write_text("from-file")
    args = build_parser().parse_args(["--api-token-file", str(path), "node", "list"])
    assert read_secret(args, "api_token") == "from-file"
    assert read_secret(build_parser().parse_args(["node", "list"]), "api_token") == "from-env"


@pytest.mark.parametrize("content", [None, "", "\n"])
def test_missing_or_empty_file_names_the_flag(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    args = argparse.Namespace(api_token_file=str(path))
    with pytest.raises(ValidationError) as err:
        read_secret(args, "api_token")
    assert err.value.details["field"] == "--api-token-file"
    assert err.value.details["value"] == str(path)
