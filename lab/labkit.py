"""Plumbing shared by the namespace lab (``herdlab``) and the VM lab (``vmnodes``).

Both labs keep one ``state.json`` per lab under a root directory, serialise ups and
downs with a lock file, hand out a free /24 index per lab, generate one cluster key plus
a host key per node, and kill processes they started.  Only what the two really share
lives here; each caller passes what differs (its state class, its error class, its
wording), so a fix to the plumbing reaches both labs at once.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
MAX_INDEX = 254


@dataclass
class LabState:
    """Base of a lab's state dataclass: lookup by node name and the ``state.json`` file.

    Subclasses add their own fields and name their node dataclass (what ``nodes``
    holds), error class and wording as class keywords::

        class Lab(LabState, node_type=LabNode, error=LabError, label="lab"): ...
    """

    node_type: ClassVar[type]
    error: ClassVar[type[Exception]]
    label: ClassVar[str]

    name: str
    index: int
    dir: str
    key_path: str
    nodes: list[Any] = field(default_factory=list, kw_only=True)
    status: str = field(default="building", kw_only=True)
    owner_pid: int | None = field(default=None, kw_only=True)

    def __init_subclass__(
        cls, node_type: type, error: type[Exception], label: str, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        cls.node_type, cls.error, cls.label = node_type, error, label

    def node(self, name: str) -> Any:
        for node in self.nodes:
            if node.name == name:
                return node
        raise self.error(f"{self.label} {self.name} has no node {name}")

    def save(self) -> None:
        """Write via a temporary file: a crash mid-write must not lose the whole state."""
        path = Path(self.dir) / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Self:
        raw_nodes = data.pop("nodes", [])
        lab = cls(**data)
        lab.nodes = [cls.node_type(**n) for n in raw_nodes]  # type: ignore[union-attr]
        return lab


class NodeFile:
    """A file in a node's own directory, as a read-only attribute of the node dataclass.

    Node dataclasses record only ``dir``; where each file lives follows from it, so it is
    derived rather than stored in ``state.json``.
    """

    def __init__(self, filename: str) -> None:
        self.filename = filename

    def __get__(self, node: Any, owner: type | None = None) -> Path:
        return Path(node.dir) / self.filename


S = TypeVar("S", bound=LabState)


def new_state(
    state: type[S],
    name: str,
    root: Path,
    count: int,
    plan_node: Callable[[S, int], Any],
    **fields: Any,
) -> S:
    """Record a new lab ``name`` with nodes ``1..count`` before anything is built, so a
    failure half-way leaves state that ``down`` can follow."""
    lab = state(name=name, dir=str(root / name), key_path=str(root / name / "id_ed25519"), **fields)
    Path(lab.dir).mkdir(parents=True)
    lab.nodes = [plan_node(lab, i) for i in range(1, count + 1)]
    lab.save()
    return lab


def mark_up(lab: S) -> S:
    """Only a lab marked up counts as healthy for a later ``up`` to reuse."""
    lab.status = "up"
    lab.save()
    return lab


def load_existing(state: type[S], name: str, root: Path) -> S:
    lab = load_state(state, name, root)
    if lab is None:
        raise state.error(f"no {state.label} named {name} under {root}")
    return lab


def down_locked(
    state: type[S], name: str, root: Path, teardown: Callable[[str, Path, S | None], None]
) -> None:
    """Tear lab ``name`` down under the root's lock, with whatever state it recorded."""
    with locked(lock_path(root)):
        teardown(name, root, load_state(state, name, root))


def summaries(
    labs: Iterable[LabState], fields: Sequence[str], node: Callable[[Any], dict[str, object]]
) -> list[dict[str, object]]:
    """The ``status`` command's report: what both labs say of each lab, its own ``fields``,
    then ``node`` of each of its nodes (liveness, as each lab can tell it)."""
    return [
        {
            "name": lab.name,
            "status": lab.status,
            "index": lab.index,
            **{f: getattr(lab, f) for f in fields},
            "nodes": [node(n) for n in lab.nodes],
        }
        for lab in labs
    ]


def check_name(name: str, error: type[Exception], label: str) -> None:
    """Lab names end up in interface and namespace names, which are short and plain."""
    if not NAME_RE.match(name):
        raise error(f"{label} name {name!r} must match {NAME_RE.pattern}")


def check_nodes(nodes: int, maximum: int, error: type[Exception]) -> None:
    if not 1 <= nodes <= maximum:
        raise error(f"nodes must be 1..{maximum}, got {nodes}")


def lock_path(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return root / ".lock"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``: index allocation and shared devices need it."""
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def load_state(state: type[S], name: str, root: Path) -> S | None:
    """Lab ``name``'s recorded state, None if it has none; a corrupt file is an error."""
    try:
        data = json.loads((root / name / "state.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise state.error(f"unreadable {state.label} state for {name}: {exc}") from exc
    return state.from_dict(data)


def all_states(state: type[S], root: Path) -> list[S]:
    labs = []
    if root.is_dir():
        for entry in sorted(root.iterdir()):
            lab = load_state(state, entry.name, root) if entry.is_dir() else None
            if lab is not None:
                labs.append(lab)
    return labs


def free_index(
    state: type[LabState], root: Path, taken: Callable[[int], bool] = lambda index: False
) -> int:
    """An index no recorded lab uses and ``taken`` does not claim (devices of other roots)."""
    used = {lab.index for lab in all_states(state, root)}
    for index in range(1, MAX_INDEX + 1):
        if index not in used and not taken(index):
            return index
    raise state.error(f"all {MAX_INDEX} {state.label} subnets are in use")


def reap_orphans(
    state: type[LabState], prefix: str, root: Path, down: Callable[[str, Path], None]
) -> list[str]:
    """Tear down labs named ``prefix…`` whose owner process is gone (killed test runs)."""
    reaped = []
    for lab in all_states(state, Path(root).resolve()):
        if lab.name.startswith(prefix) and lab.owner_pid and not alive(lab.owner_pid):
            down(lab.name, root)
            reaped.append(lab.name)
    return reaped


def make_keys(keys: Iterable[tuple[str, str]], error: type[Exception]) -> None:
    """Generate every ``(path, comment)`` key in parallel: ssh-keygen is the slow bit."""
    jobs = [
        subprocess.Popen(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path, comment in keys
    ]
    for proc in jobs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise error(f"ssh-keygen failed: {err.strip()}")


def public_key_line(pub_file: Path) -> str:
    """``type base64`` of an OpenSSH public key file, without its comment (known_hosts form)."""
    pub = pub_file.read_text().split()
    return f"{pub[0]} {pub[1]}"


def alive(pid: int) -> bool:
    """True for a live process; zombies count as dead (our launchers reap theirs)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def kill_pids(pids: Sequence[int], grace: float) -> list[int]:
    """TERM, then KILL, allowing ``grace`` seconds each; returns the pids that survived."""
    left = list(pids)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while left and time.monotonic() < deadline:
            left = [p for p in left if alive(p)]
            if left:
                time.sleep(0.01)
        if not left:
            return []
    return left


def run(
    argv: Sequence[str], error: type[Exception], check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a host command; with ``check``, a failure becomes ``error`` naming the command."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, input=input)
    if check and proc.returncode != 0:
        raise error(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


Command = Callable[[argparse.Namespace], object]


def cli(
    argv: Sequence[str] | None,
    program: str,
    doc: str,
    defaults: tuple[Path, str, int],
    error: type[Exception],
    helps: tuple[str, str, str],
    lab: tuple[Callable[[str, int, Path], Any], Callable[[str, Path], None], Callable[[Path], Any]],
    extra: dict[str, tuple[str, Command]] | None = None,
    named: tuple[str, ...] = (),
) -> int:
    """A lab CLI: ``--root``, any ``extra`` commands, then ``up``/``down``/``status`` (the
    lab's three functions, with ``helps``); a command's result is printed as JSON.

    ``defaults`` are the root, lab name and node count; ``up``, ``down`` and the ``named``
    extra commands act on one lab, chosen by ``--name``.  The lab's own ``error`` becomes
    a one-line message and exit status 1.
    """
    root, name, nodes = defaults
    up, down, status = lab
    commands: dict[str, tuple[str, Command]] = {
        **(extra or {}),
        "up": (helps[0], lambda a: asdict(up(a.name, a.nodes, a.root))),
        "down": (helps[1], lambda a: down(a.name, a.root)),
        "status": (helps[2], lambda a: status(a.root)),
    }
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--root", type=Path, default=root, help=f"{program} state directory")
    sub = parser.add_subparsers(dest="command", required=True)
    for command, (help_text, _) in commands.items():
        p = sub.add_parser(command, help=help_text)
        if command in ("up", "down", *named):
            p.add_argument("--name", default=name)
        if command == "up":
            p.add_argument("--nodes", type=int, default=nodes)
    args = parser.parse_args(argv)
    try:
        result = commands[args.command][1](args)
    except error as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        return 1
    if result is not None:
        print(json.dumps(result, indent=2))
    return 0
