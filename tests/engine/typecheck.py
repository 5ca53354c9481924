"""Type-check a snippet of client code against the engine, as ``engine/pyproject.toml``
configures mypy (strict), so a test can pin what an interface promises its callers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engine"


def type_errors(source: str, tmp_path: Path) -> list[str]:
    """mypy's error lines for ``source``; empty when it type-checks cleanly."""
    snippet = tmp_path / "snippet.py"
    snippet.write_text(source)
    # A file named on the command line replaces the configured ``files``; run from the
    # engine so its config applies and ``herd`` resolves to this checkout's source.
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), str(snippet)],
        cwd=ENGINE,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert errors or done.returncode == 0, done.stdout + done.stderr
    return errors
