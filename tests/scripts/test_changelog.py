"""The changelog is antsibull-changelog's: fragments that lint, and a CHANGELOG.rst that is
exactly what scripts/changelog.sh generates from them (so a fragment added without
regenerating, or a hand edit of the generated file, fails here rather than at release)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_fragments_pass_antsibull_changelog_lint() -> None:
    done = subprocess.run(
        ["antsibull-changelog", "lint"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_committed_changelog_is_what_the_fragments_generate(tmp_path: Path) -> None:
    fresh = tmp_path / "CHANGELOG.rst"
    subprocess.run(
        ["bash", str(REPO / "scripts" / "changelog.sh"), str(fresh)], check=True, timeout=300
    )
    assert (REPO / "CHANGELOG.rst").read_text() == fresh.read_text(), (
        "CHANGELOG.rst is stale: run `bash scripts/changelog.sh`"
    )


def test_every_fragment_reaches_the_changelog() -> None:
    text = " ".join((REPO / "CHANGELOG.rst").read_text().split())
    fragments = sorted((REPO / "changelogs" / "fragments").glob("*.yml"))
    assert fragments
    for fragment in fragments:
        for entries in yaml.safe_load(fragment.read_text()).values():
            for entry in [entries] if isinstance(entries, str) else entries:
                assert " ".join(entry.split()) in text, f"{fragment.name}: {entry[:60]}"
