"""Writing key material to disk without ever exposing it.

Every secret the cluster keeps (CA key, node keys, domain secret, SSH key) goes through
here so that none of them is readable by anyone but root even for an instant, and a crash
mid-write never leaves a truncated key that a daemon would later fail to parse.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

#: Mode for private keys and secrets: root only.
PRIVATE_MODE = 0o600
#: Mode for certificates and public keys, which peers and tools may read.
PUBLIC_MODE = 0o644


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` in one rename, the file carrying ``mode`` from birth.

    ``mkstemp`` creates the temporary file 0600 and its final mode is set before any byte
    is written, so a private key is never briefly world-readable as it would be with
    ``open()`` followed by ``chmod()``.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
