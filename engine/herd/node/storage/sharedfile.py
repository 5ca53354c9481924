"""The ``sharedfile`` template: image files on a directory every node mounts (NFS, CephFS).

Identical to ``file`` except where the images live: because every node sees the same
directory, an instance can migrate or fail over to any node of its group without copying
its disks, as with Ganeti's sharedfile template. The directory is the operator's to
mount; the node only checks the paths stay inside it.
"""

from __future__ import annotations

import os
from pathlib import Path

from herd.node.storage.base import register_backend
from herd.node.storage.file import FileStorage

SHARED_DIR_ENV = "HERD_SHARED_FILE_DIR"
DEFAULT_SHARED_DIR = "/srv/herd/shared-file-storage"


@register_backend
class SharedFileStorage(FileStorage):
    template = "sharedfile"

    @property
    def storage_dir(self) -> Path:
        return Path(os.environ.get(SHARED_DIR_ENV) or DEFAULT_SHARED_DIR)
