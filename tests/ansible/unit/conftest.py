"""Make this checkout importable as ``ansible_collections.herd.cluster``.

Module code imports its module_utils by their collection path, as Ansible requires, but the
repo keeps the collection at its root. A throw-away ``ansible_collections/herd/cluster``
symlink to the checkout, put on sys.path before any test module imports, bridges the two
without copying the code under test.

Under ``ansible-test units`` (tests/ansible/run-units.sh) these tests run from a copy in
the installed collection's tests/unit/, where ansible-test already imports the installed
code: the copy only needs the checkout on sys.path, for the engine's test harness, and
finds it in the ``herd-checkout`` file the script writes beside this one.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECKOUT_FILE = HERE / "herd-checkout"


def _bridge(repo: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="herd-collection-"))
    atexit.register(shutil.rmtree, root, True)
    (root / "ansible_collections" / "herd").mkdir(parents=True)
    (root / "ansible_collections" / "herd" / "cluster").symlink_to(repo)
    sys.path.insert(0, str(root))


if CHECKOUT_FILE.exists():
    REPO = Path(CHECKOUT_FILE.read_text().strip())
    sys.path.insert(0, str(REPO))
else:
    REPO = HERE.parents[2]
    _bridge(REPO)
