"""The committed docs/modules pages must be what the modules' documentation generates."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[5]


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_module_docs", REPO / "docs" / "tools" / "gen_module_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_module_docs_are_up_to_date() -> None:
    stale = _tool().stale(REPO)
    assert stale == [], f"run python docs/tools/gen_module_docs.py; stale: {stale}"


def test_pages_include_fragment_options_and_examples() -> None:
    page = _tool().render_all(REPO)[Path("docs/modules/node.md")]
    assert "| `api_token` | str |" in page
    assert "| `wait_timeout` | int | no | `3600` |" in page
    assert "herd.cluster.node:" in page


def test_a_changed_module_doc_makes_the_pages_stale(tmp_path: Path) -> None:
    for part in ("plugins", "docs"):
        shutil.copytree(REPO / part, tmp_path / part)
    module = tmp_path / "plugins" / "modules" / "node.py"
    module.write_text(module.read_text().replace("Name of the node", "Host name of the node"))
    assert _tool().stale(tmp_path) == [Path("docs/modules/node.md")]


def test_inventory_plugins_get_a_page_naming_the_core_fragments() -> None:
    pages = _tool().render_all(REPO)
    page = pages[Path("docs/modules/herd_inventory.md")]
    assert page.startswith("# herd.cluster.herd (inventory plugin)")
    assert "| `want_nodes` | bool | no | `False` |" in page and "| `api_token` | str |" in page
    assert "`ansible.builtin.constructed`, `ansible.builtin.inventory_cache`" in page
    assert "## Return values" not in page
    assert "[herd.cluster.herd](herd_inventory.md)" in pages[Path("docs/modules/README.md")]
