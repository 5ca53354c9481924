"""Which declared parameters differ from an object's current state.

Every module is declarative: the task states only what it cares about. A parameter left
unset (None) is "don't care", and a dict parameter such as ``hvparams`` pins only the keys
it names, so unrelated settings made elsewhere never make a task report ``changed``. The
same comparison drives idempotency, check mode and ``--diff``, so the three cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def merge_declared(current: Any, declared: Any) -> Any:
    """The value a field should have after the change: ``current`` with ``declared`` applied.

    Dicts merge recursively by declared key, and a None inside a declared dict means "don't
    care" there too. The merged whole is what modules submit, so the result is the same
    whether the master replaces or merges dict parameters.
    """
    if isinstance(declared, dict) and isinstance(current, dict):
        merged = dict(current)
        for key, value in declared.items():
            if value is not None:
                merged[key] = merge_declared(current.get(key), value)
        return merged
    if isinstance(declared, dict):
        return {k: v for k, v in declared.items() if v is not None}
    return declared


def _same(current: Any, declared: Any, unordered: bool) -> bool:
    if isinstance(declared, dict):
        if not isinstance(current, dict):
            return False
        return all(v is None or _same(current.get(k), v, False) for k, v in declared.items())
    if unordered and isinstance(declared, list) and isinstance(current, list):
        return sorted(map(repr, current)) == sorted(map(repr, declared))
    if isinstance(declared, bool) or isinstance(current, bool):
        return type(declared) is type(current) and declared == current
    return current == declared


def diff_fields(
    current: dict[str, Any],
    declared: dict[str, Any],
    unordered: Iterable[str] = ("tags",),
) -> dict[str, tuple[Any, Any]]:
    """Fields whose declared value differs from ``current``: {field: (before, after)}.

    ``after`` is the merged value (see merge_declared). Fields named in ``unordered`` are
    lists compared as multisets, because the master keeps tags as a set and would otherwise
    report a reordering as a change forever.
    """
    unordered_fields = set(unordered)
    changes: dict[str, tuple[Any, Any]] = {}
    for field, want in declared.items():
        if want is None:
            continue
        have = current.get(field)
        if not _same(have, want, field in unordered_fields):
            changes[field] = (have, merge_declared(have, want))
    return changes


def changed_to(changes: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    """The values the differing fields take: what a modify op submits and the diff shows
    as ``after``, so the two cannot disagree."""
    return {field: pair[1] for field, pair in changes.items()}


def diff_result(changes: dict[str, tuple[Any, Any]]) -> dict[str, dict[str, Any]]:
    """Ansible's ``diff`` value, restricted to the fields that differ."""
    return {
        "before": {field: pair[0] for field, pair in changes.items()},
        "after": changed_to(changes),
    }


def declared_only(params: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """The subset of module ``params`` among ``fields`` that the task actually set."""
    return {f: params[f] for f in fields if params.get(f) is not None}
