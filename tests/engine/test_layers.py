"""Nothing reaches up: the layer map of docs/design.md ("Layers"), checked from the source.

Every module under ``engine/herd`` is read with ``ast``, never imported, so the check needs
no dependencies, no root and no nodes, and still sees a module that would fail to import. An
import counts wherever it stands (module level or inside a function: a lazy import still
runs the module), except under ``if TYPE_CHECKING:``, which never runs. An import of a
module also runs its package's ``__init__``; that only crosses a layer for the bottom
modules that live inside a layered package (``herd.jobs.job``, ``herd.jobs.status``,
``herd.rpc.protocol``), and ``test_packages_of_the_bottom_import_only_the_bottom`` covers
exactly that case.

The rule tables come first; each exception says why it exists. Change a table only
together with the "Layers" section of docs/design.md (a test compares the two).
"""

from __future__ import annotations

import ast
import functools
import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[2]
ENGINE_DIR = REPO / "engine"
DESIGN_MD = REPO / "docs" / "design.md"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cli", ("herd.cli",)),
    ("master", ("herd.master",)),
    ("api", ("herd.api",)),
    ("auth", ("herd.auth",)),
    ("jobs", ("herd.jobs",)),
    ("locking", ("herd.locking",)),
    ("ops", ("herd.ops",)),
    ("alloc", ("herd.alloc",)),
    ("config", ("herd.config",)),
    ("client and rpc", ("herd.client", "herd.rpc")),
    ("node agent", ("herd.node.agent",)),
    ("node", ("herd.node",)),
)
"""Top to bottom; a module belongs to the layer of its longest matching prefix. A module
may import its own layer and any layer below it, never one above.

``alloc`` sits above ``config`` although ARCHITECTURE.md draws it below: placement reads
the cluster model (``herd.alloc.model.snapshot`` builds its snapshot from config objects)
and the config store needs nothing of placement. ``herd.client`` shares the rpc layer:
both are how the master side talks to something else (another master, a node), and ops
(remote moves) use both."""

SHARED_BOTTOM: dict[str, str] = {
    "herd": "the package root holds only ``__version__``, which every side reports",
    "herd.errors": "every layer raises them and they cross the API and the node agent intact",
    "herd.faults": "fault-injection points are planted in every layer (tests/faults/)",
    "herd.redact": "secret scrubbing applies to config dumps, job params and logs alike",
    "herd.crypto": "the CA, TLS and keys are used by the master and by nodes' transfers",
    "herd.rpc.protocol": "the agent's wire protocol: both ends (rpc client, node agent) share it",
    "herd.jobs.job": "the job document: the queue, the API and the job DB share it",
    "herd.jobs.status": "job statuses and limits: the queue, the API, the client and the CLI agree",
    "herd.hvparams": "hypervisor tables as data: the master checks them, node hypervisors use them",
}
"""Below every layer and importable by any: each is plain data or leaf code, and each may
itself import only the bottom. An entry names a module or a package (all of it)."""

ONLY_FROM: dict[str, tuple[tuple[str, ...], str]] = {
    "herd.cli": (
        ("herd.cli", "herd.client"),
        "clients only submit jobs and read results: they never run ops in process",
    ),
    "herd.client": (
        ("herd.client",),
        "the API client, shared by the CLI and cross-cluster moves, knows only HTTP and JSON",
    ),
    "herd.rpc": (
        ("herd.rpc",),
        "rpc carries calls to nodes and knows nothing of what they mean: it shares only "
        "herd.rpc.protocol with the agent",
    ),
    "herd.node": (
        ("herd.node",),
        "nodes never touch config, nor anything of the master: a node knows only what the "
        "master sends in a call",
    ),
}
"""Importer prefix -> (the prefixes it may import besides the shared bottom, the rule)."""

ONLY_FROM_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("herd.cli.opspec", "herd.ops.base"): (
        "build_spec() reads registry() to regenerate the cached opspec.json (``--write`` and "
        "the drift test); imported inside that function, so no CLI command loads the ops"
    ),
    ("herd.cli.main", "herd.master.daemon"): (
        "``herd master`` is the daemon's entry point; imported inside _run_master only, so "
        "every other command stays a pure client"
    ),
}
"""(importer, imported) pairs the ``ONLY_FROM`` rule lets through."""

NO_SHELL: tuple[str, ...] = ("herd.ops", "herd.alloc")
"""An op never runs a command itself: it asks rpc to ask a node (ARCHITECTURE.md)."""

SHELL_MODULES = ("subprocess", "pty")
"""Modules whose only purpose is to run other programs: importing one is the tell."""

SHELL_OS_CALLS = ("system", "popen", "exec", "spawn", "posix_spawn")
"""``os`` attributes (or prefixes: ``execv``, ``spawnl`` …) that start another program;
``import os`` itself is everyday file handling."""

NO_SHELL_EXCEPTIONS: dict[str, str] = {
    "herd.alloc.iallocator": (
        "Ganeti's iallocator protocol runs the site's allocator program on the master: named "
        "only, looked up in SEARCH_PATH, run from an argv list with no shell, its input in a "
        "JSON file (docs/design.md, Operations)"
    ),
}
"""Modules of ``NO_SHELL`` packages that may start a program, and why."""


class Edge(NamedTuple):
    """One import: ``importer`` imports ``imported`` at ``path:line``."""

    importer: str
    imported: str
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported} ({self.path.name}:{self.line})"


def module_names(root: Path) -> dict[str, Path]:
    """``{dotted name: file}`` for every module under ``root/herd``."""
    names = {}
    for path in sorted((root / "herd").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


@functools.cache
def runtime_nodes(path: Path) -> tuple[ast.AST, ...]:
    """The nodes of ``path`` that run, parsed once per session: both checks read them."""
    return tuple(_runtime_nodes(ast.parse(path.read_text(), str(path))))


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` (never run)."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.orelse:
                yield stmt
                yield from _runtime_nodes(stmt)
            continue
        yield child
        yield from _runtime_nodes(child)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.AST, package: str, modules: dict[str, Path]) -> list[str]:
    """The herd modules an import statement loads: ``from a import b`` is ``a.b`` when
    that is a module, else ``a``; relative imports resolve against ``package``."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "herd"]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        source = ".".join([*base, *([node.module] if node.module else [])])
    else:
        source = node.module or ""
    if source.split(".")[0] != "herd":
        return []
    named = (f"{source}.{a.name}" for a in node.names)
    return sorted({name if name in modules else source for name in named})


def import_edges(root: Path) -> list[Edge]:
    """Every import of a herd module by a herd module under ``root``, at run time."""
    modules = module_names(root)
    edges = []
    for name, path in modules.items():
        package = _package_of(name, path)
        for node in runtime_nodes(path):
            for target in _targets(node, package, modules):
                edges.append(Edge(name, target, path, getattr(node, "lineno", 0)))
    return edges


def shell_uses(root: Path) -> list[Edge]:
    """Imports of ``SHELL_MODULES`` and uses of ``os`` process starters, as edges."""
    found = []
    for name, path in module_names(root).items():
        for node in runtime_nodes(path):
            used = _shell_use(node)
            if used:
                found.append(Edge(name, used, path, getattr(node, "lineno", 0)))
    return found


def _shell_use(node: ast.AST) -> str | None:
    if isinstance(node, ast.Import):
        hits = [a.name for a in node.names if a.name.split(".")[0] in SHELL_MODULES]
        return hits[0] if hits else None
    if isinstance(node, ast.ImportFrom) and node.module:
        if node.module.split(".")[0] in SHELL_MODULES:
            return node.module
        if node.module == "os":
            hits = [a.name for a in node.names if a.name.startswith(SHELL_OS_CALLS)]
            return f"os.{hits[0]}" if hits else None
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
        and node.attr.startswith(SHELL_OS_CALLS)
    ):
        return f"os.{node.attr}"
    return None


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def in_bottom(name: str) -> bool:
    return name in SHARED_BOTTOM or any(_under(name, p) for p in SHARED_BOTTOM if p != "herd")


def rank(name: str) -> int:
    """0 for the top layer, ``len(LAYERS)`` for the shared bottom."""
    if in_bottom(name):
        return len(LAYERS)
    matches = [
        (len(prefix), index)
        for index, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if _under(name, prefix)
    ]
    if not matches:
        raise AssertionError(f"{name} is in no layer: add it to LAYERS or SHARED_BOTTOM")
    return max(matches)[1]


def layer_name(name: str) -> str:
    index = rank(name)
    return "shared bottom" if index == len(LAYERS) else LAYERS[index][0]


def upward(edges: list[Edge]) -> list[str]:
    """The edges that reach a layer above the importer's, described for a failure."""
    return [
        f"{e}: the {layer_name(e.importer)} layer reaches up to {layer_name(e.imported)}"
        for e in edges
        if rank(e.imported) < rank(e.importer)
    ]


def outside_allowed(edges: list[Edge]) -> list[str]:
    """The edges that break an ``ONLY_FROM`` rule and have no listed exception."""
    broken = []
    for e in edges:
        for importer, (allowed, rule) in ONLY_FROM.items():
            if (
                _under(e.importer, importer)
                and not in_bottom(e.imported)
                and not any(_under(e.imported, p) for p in allowed)
                and (e.importer, e.imported) not in ONLY_FROM_EXCEPTIONS
            ):
                broken.append(f"{e}: {rule}")
    return broken


def _fail_on(found: list[str]) -> None:
    assert not found, "\n".join(["", *found])


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    return import_edges(ENGINE_DIR)


def test_every_module_is_in_a_layer() -> None:
    assert len(module_names(ENGINE_DIR)) > 100
    for name in module_names(ENGINE_DIR):
        rank(name)


def test_every_import_names_an_existing_module(edges: list[Edge]) -> None:
    modules = module_names(ENGINE_DIR)
    _fail_on([f"{e}: no such module" for e in edges if e.imported not in modules])


def test_nothing_imports_from_a_layer_above_its_own(edges: list[Edge]) -> None:
    _fail_on(upward(edges))


def test_packages_of_the_bottom_import_only_the_bottom(edges: list[Edge]) -> None:
    """Importing ``herd.jobs.job`` runs ``herd/jobs/__init__.py`` first: a package
    holding a bottom module must not pull its own layer in behind it."""
    parents = {name.rpartition(".")[0] for name in SHARED_BOTTOM} - {"", "herd"}
    _fail_on(
        [
            f"{e}: importing {e.importer}'s bottom modules would load it"
            for e in edges
            if e.importer in parents and not in_bottom(e.imported)
        ]
    )


def test_clients_rpc_and_nodes_import_only_what_their_rule_allows(edges: list[Edge]) -> None:
    _fail_on(outside_allowed(edges))


def test_listed_exceptions_are_still_needed(edges: list[Edge]) -> None:
    """An exception nobody uses any more is a hole waiting for a new import."""
    pairs = {(e.importer, e.imported) for e in edges}
    assert set(ONLY_FROM_EXCEPTIONS) <= pairs
    starters = {e.importer for e in shell_uses(ENGINE_DIR)}
    assert set(NO_SHELL_EXCEPTIONS) <= starters


def test_ops_and_alloc_never_start_a_program() -> None:
    _fail_on(
        [
            f"{e}: ops ask rpc to ask a node instead"
            for e in shell_uses(ENGINE_DIR)
            if any(_under(e.importer, p) for p in NO_SHELL)
            and e.importer not in NO_SHELL_EXCEPTIONS
        ]
    )


def documented_layers(text: str) -> tuple[list[tuple[str, ...]], set[str]]:
    """The layers (top to bottom) and the shared bottom drawn in design.md's "Layers"."""
    block = text.split("\n## Layers\n", 1)[1].split("```")[1]
    upper, _, bottom = block.partition("shared bottom")
    layers = []
    for line in upper.splitlines():
        words = list(itertools.takewhile(_is_module_name, line.split()))
        if words:
            layers.append(tuple(words))
    return layers, {w for w in bottom.split() if _is_module_name(w)}


def _is_module_name(word: str) -> bool:
    return re.fullmatch(r"herd(\.\w+)*", word) is not None


def test_design_md_draws_the_layers_this_test_enforces() -> None:
    layers, bottom = documented_layers(DESIGN_MD.read_text())
    assert layers == [prefixes for _, prefixes in LAYERS]
    assert bottom == set(SHARED_BOTTOM)


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "herd" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checker_resolves_relative_imports_and_skips_type_checking(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "errors.py": "",
            "config/__init__.py": "from . import model\n",
            "config/model.py": (
                "from typing import TYPE_CHECKING\n"
                "from ..errors import X\n"
                "if TYPE_CHECKING:\n"
                "    from herd.ops.base import Op\n"
                "else:\n"
                "    import herd.node.proc\n"
                "def lazy():\n"
                "    from ..ops import base\n"
            ),
            "ops/__init__.py": "",
            "ops/base.py": "import os\nos.system('true')\n",
            "node/__init__.py": "",
            "node/proc.py": "",
        },
    )
    found = {(e.importer, e.imported, e.line) for e in import_edges(root)}
    assert found == {
        ("herd.config", "herd.config.model", 1),
        ("herd.config.model", "herd.errors", 2),
        ("herd.config.model", "herd.node.proc", 6),
        ("herd.config.model", "herd.ops.base", 8),
    }
    assert upward(import_edges(root)) == [
        "herd.config.model -> herd.ops.base (model.py:8): the config layer reaches up to ops"
    ]
    assert [str(e) for e in shell_uses(root)] == ["herd.ops.base -> os.system (base.py:2)"]


def test_the_checker_holds_clients_and_nodes_to_their_rules(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "cli/__init__.py": "",
            "cli/main.py": "from herd.ops import instance_add\nfrom herd.jobs.job import FINAL\n",
            "node/__init__.py": "",
            "node/agent.py": "from herd.config.model import Node\n",
            "ops/__init__.py": "",
            "ops/instance_add.py": "",
            "jobs/__init__.py": "",
            "jobs/job.py": "",
            "config/__init__.py": "",
            "config/model.py": "",
        },
    )
    assert outside_allowed(import_edges(root)) == [
        "herd.cli.main -> herd.ops.instance_add (main.py:1): " + ONLY_FROM["herd.cli"][1],
        "herd.node.agent -> herd.config.model (agent.py:1): " + ONLY_FROM["herd.node"][1],
    ]
