"""herd.ops.catalog: importing it must register every op, since the master, the API
and the CLI find ops only through the registry (an op module left out of the catalog
would be an op nobody can submit)."""

from __future__ import annotations

import re
from pathlib import Path

import herd.ops
from herd.ops import catalog
from herd.ops.base import registry

OPS_DIR = Path(herd.ops.__file__).parent


def op_modules() -> set[str]:
    """Modules that define an op: those using the ``@register`` decorator."""
    return {
        path.stem
        for path in OPS_DIR.glob("*.py")
        if re.search(r"^@register$", path.read_text(), re.MULTILINE)
    }


def test_every_op_module_is_in_the_catalog() -> None:
    assert op_modules() - set(vars(catalog)) == set()


def test_every_registered_op_comes_from_a_catalog_module() -> None:
    ops = registry()
    assert {cls.__module__.rsplit(".", 1)[1] for cls in ops.values()} == op_modules()
    assert {"cluster.init", "group.add", "node.add", "debug.delay"} <= set(ops)


def test_every_op_is_documented_under_its_own_id() -> None:
    for op_id, cls in registry().items():
        assert op_id == cls.OP_ID and cls.SUMMARY, op_id
        assert all(param.doc for param in cls.PARAMS), op_id
