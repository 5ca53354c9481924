"""A scripted command runner: records command lines and answers from a script."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from herd.node.storage.plain import CommandResult, command_error

DATA = Path(__file__).parent / "data"


def data(name: str) -> str:
    return (DATA / name).read_text()


class ScriptedRunner:
    """Answers each command from ``script`` by its first matching prefix, in order.

    A script entry is ``(prefix, (returncode, stdout, stderr))``; an entry is used up
    once matched, so a test can make ``lvs`` answer "missing" first and "present" after
    the ``lvcreate`` it expects.  An unscripted command fails the test.
    """

    def __init__(self, *script: tuple[Sequence[str], tuple[int, str, str]]) -> None:
        self.script = [(tuple(prefix), answer) for prefix, answer in script]
        self.calls: list[tuple[str, ...]] = []

    def __call__(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 0.0,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        argv = tuple(argv)
        self.calls.append(argv)
        for i, (prefix, (code, out, err)) in enumerate(self.script):
            if argv[: len(prefix)] == prefix:
                del self.script[i]
                result = CommandResult(argv, code, out, err)
                if check and code != 0:
                    raise command_error(result)
                return result
        raise AssertionError(f"unscripted command: {argv}")

    def commands(self, name: str) -> list[tuple[str, ...]]:
        return [c for c in self.calls if c[0] == name]
