"""The collection installed where Ansible looks for it, shared by the playbook tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ansible.integration.runner import REPO


@pytest.fixture(scope="module")
def collections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkout installed where Ansible looks for collections (a symlink, no copy)."""
    root = tmp_path_factory.mktemp("collections")
    (root / "ansible_collections" / "herd").mkdir(parents=True)
    (root / "ansible_collections" / "herd" / "cluster").symlink_to(REPO)
    return root
