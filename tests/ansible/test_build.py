"""The tarball `ansible-galaxy collection build` makes holds the collection and nothing
else: build_ignore keeps the engine, the lab (its keys, VM images, sockets), tests and dev
tooling out, whatever lies in the checkout."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: What a collection ships: its content, its docs and changelog, the Molecule scenarios.
SHIPPED = {
    "CHANGELOG.rst", "FILES.json", "LICENSE", "MANIFEST.json", "README.md",
    "changelogs", "docs", "extensions", "meta", "playbooks", "plugins", "roles",
}  # fmt: skip


def test_the_tarball_ships_only_the_collection(tmp_path: Path) -> None:
    subprocess.run(
        ["ansible-galaxy", "collection", "build", "--output-path", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (tarball,) = tmp_path.glob("herd-cluster-*.tar.gz")
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert {name.split("/")[0] for name in names} <= SHIPPED
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".key", ".qcow2"))]
    assert "docs/tools" not in {str(Path(n).parent) for n in names}
    assert "plugins/modules/tag.py" in names and "CHANGELOG.rst" in names
