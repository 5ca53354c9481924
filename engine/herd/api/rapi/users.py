"""The RAPI users file, in Ganeti's format, reread whenever it changes.

Ganeti's tools and playbooks ship this file (``user {HA1}hash write``), so operators keep
the one they have. Each line is ``NAME PASSWORD [OPTIONS]``: the password is
``{HA1}``-prefixed MD5 of ``NAME:Ganeti Remote API:PASSWORD``, ``{cleartext}``-prefixed,
or bare (cleartext); options are a comma-separated list of ``write`` and ``read``, and a
user without ``write`` may only read. A line starting with ``#`` is a comment (as
Ganeti reads it: a ``#`` inside a password is part of the password).

The file holds passwords: it must be root's alone (no group or other access, as Ganeti's
``rapi_users`` is), and a line it cannot read is named by number only, never quoted, since
the refusal may reach whoever tried to log in.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from herd.auth import Principal
from herd.errors import AuthenticationError, ValidationError

#: The realm Ganeti hashes into ``{HA1}`` passwords; a different one breaks every hash.
REALM = "Ganeti Remote API"
OPTIONS = frozenset({"write", "read"})
HA1_PREFIX, CLEARTEXT_PREFIX = "{ha1}", "{cleartext}"
#: Where the file lives, under the master's state directory.
USERS_FILE = Path("rapi") / "users"
#: The value a refusal shows in place of a line of the file.
HIDDEN = "<hidden>"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RapiUser:
    """One line of the file: the stored secret as written, and whether it may write."""

    name: str
    password: str
    write: bool

    def check(self, password: str) -> bool:
        """Constant-time comparison against the stored form (prefixes in any case, as
        Ganeti reads them)."""
        stored = self.password
        if stored.lower().startswith(HA1_PREFIX):
            expected = stored[len(HA1_PREFIX) :].lower()
            return hmac.compare_digest(ha1(self.name, password).encode(), expected.encode())
        if stored.lower().startswith(CLEARTEXT_PREFIX):
            stored = stored[len(CLEARTEXT_PREFIX) :]
        return hmac.compare_digest(password.encode(), stored.encode())


def ha1(name: str, password: str) -> str:
    """Ganeti's ``{HA1}`` hash (HTTP digest's HA1), as ``gnt-cluster`` docs tell users to
    make it; MD5 is Ganeti's choice, kept so existing files still work."""
    return hashlib.md5(f"{name}:{REALM}:{password}".encode()).hexdigest()


def parse_users(text: str, source: str = "users file") -> dict[str, RapiUser]:
    """Every user in ``text``; a malformed line is refused, naming its number."""
    users: dict[str, RapiUser] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(None, 2)
        if len(fields) < 2:
            raise ValidationError(f"{source} line {number}", HIDDEN, "NAME PASSWORD [write|read]")
        options = {o.strip().lower() for o in fields[2].split(",")} if len(fields) == 3 else set()
        unknown = sorted(options - OPTIONS)
        if unknown:
            raise ValidationError(f"{source} line {number} options", fields[2], "write, read")
        users[fields[0]] = RapiUser(fields[0], fields[1], "write" in options)
    return users


class UsersFile:
    """The users in ``path``, reread when its size, mtime or inode changes.

    Checked on every request (one ``stat``), so an edit takes effect for the next
    request without a restart, as Ganeti's RAPI daemon does. A missing file means no
    users. A file that cannot be used (others may read or write it, it cannot be read,
    a line is malformed) refuses every Basic login as invalid credentials and says why
    in the master's log only, rather than letting in a half-read list or telling a
    caller about the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int, int] | None = None
        self._users: dict[str, RapiUser] = {}
        self._decoy = RapiUser("", "{cleartext}" + secrets.token_urlsafe(16), False)

    def users(self) -> dict[str, RapiUser]:
        """The current users, reread first if the file changed."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            with self._lock:
                self._stamp, self._users = None, {}
                return {}
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode)
        with self._lock:
            if stamp != self._stamp:
                if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                    mode = stat.S_IMODE(info.st_mode)
                    raise ValidationError(str(self.path), f"{mode:04o}", "mode 0600 or 0400")
                self._users = parse_users(self.path.read_text(), str(self.path))
                self._stamp = stamp
            return self._users

    def authenticate(self, name: str, password: str) -> Principal:
        """The user ``name`` if ``password`` is theirs; an unknown name costs the same."""
        try:
            known = self.users()
        except (ValidationError, OSError, UnicodeDecodeError) as exc:
            log.error("rapi: the users file cannot be used, every Basic login is refused: %s", exc)
            known = {}
        user = known.get(name)
        if not (user or self._decoy).check(password) or user is None:
            raise AuthenticationError("invalid credentials", reason="invalid")
        return Principal("rapi user", name, not user.write)
