"""The VM image's recipe hash and mirror: what decides a rebuild, checked without building."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import vmimage


def test_image_module_stands_without_the_vm_lifecycle() -> None:
    """vmnodes imports vmimage, never the other way: the image builds with no lab code."""
    probe = "import sys, vmimage; sys.exit('vmnodes' in sys.modules)"
    lab = Path(vmimage.__file__).parent
    proc = subprocess.run([sys.executable, "-c", probe], cwd=lab, timeout=60)
    assert proc.returncode == 0


def test_recipe_hash_follows_the_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    before = vmimage.recipe_hash()
    assert vmimage.recipe_hash() == before
    monkeypatch.setattr(vmimage, "PACKAGES", (*vmimage.PACKAGES, "socat"))
    assert vmimage.recipe_hash() != before


def test_mirror_comes_from_the_apt_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/security\nSuites: bookworm-security\n"
        "Components: main\n\nTypes: deb\n# a comment\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
    )
    monkeypatch.setattr(vmimage, "SOURCES_DIR", tmp_path)
    assert vmimage.debian_mirror() == "http://mirror.example/debian"
    monkeypatch.setattr(vmimage, "SOURCES_DIR", tmp_path / "none")
    assert vmimage.debian_mirror() == vmimage.FALLBACK_MIRROR
