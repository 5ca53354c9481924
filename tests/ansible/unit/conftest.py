"""Make this checkout importable as ``ansible_collections.herd.cluster``.

Module code imports its module_utils by their collection path, as Ansible requires, but the
repo keeps the collection at its root. A throw-away ``ansible_collections/herd/cluster``
symlink to the checkout, put on sys.path before any test module imports, bridges the two
without copying the code under test.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

_root = Path(tempfile.mkdtemp(prefix="herd-collection-"))
atexit.register(shutil.rmtree, _root, True)
(_root / "ansible_collections" / "herd").mkdir(parents=True)
(_root / "ansible_collections" / "herd" / "cluster").symlink_to(REPO)
sys.path.insert(0, str(_root))
