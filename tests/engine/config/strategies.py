"""Hypothesis strategies built from the model's own type hints.

Deriving them from the dataclass fields means a field added to the model is generated
(and round-tripped) by the tests without anyone remembering to extend them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from hypothesis import strategies as st

from herd.config import KINDS, ConfigObject, TopObject

text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)

_SPECIAL = {
    "uuid": st.uuids(version=4).map(str),
    "name": text.filter(bool),
    "serial": st.integers(min_value=1, max_value=2**31),
}


def _for_hint(hint: Any) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return json_values
    if origin is Literal:
        return st.sampled_from(args)
    if origin is types.UnionType:
        (inner,) = [a for a in args if a is not type(None)]
        return st.none() | _for_hint(inner)
    if origin is list:
        return st.lists(_for_hint(args[0]), max_size=3)
    if origin is tuple:
        return st.tuples(*(_for_hint(a) for a in args))
    if origin is dict:
        return st.dictionaries(text, _for_hint(args[1]), max_size=3)
    if isinstance(hint, type) and issubclass(hint, ConfigObject):
        return objects_of(hint)
    scalars = {
        str: text,
        int: st.integers(min_value=0, max_value=2**31),
        float: st.floats(min_value=0, max_value=4e9),
        bool: st.booleans(),
    }
    return scalars[hint]


def objects_of(cls: type[ConfigObject]) -> st.SearchStrategy[Any]:
    """Arbitrary valid objects of ``cls`` with every field drawn, nested ones included."""
    hints = typing.get_type_hints(cls)
    fields = {
        f.name: _SPECIAL[f.name] if f.name in _SPECIAL else _for_hint(hints[f.name])
        for f in dataclasses.fields(cls)
    }
    return st.builds(cls, **fields)


def kinds() -> st.SearchStrategy[str]:
    return st.sampled_from(list(KINDS))


@st.composite
def states(draw: st.DrawFn) -> dict[str, list[TopObject]]:
    """A whole config: objects of every kind, names unique per kind, uuids unique overall."""
    seen: set[str] = set()
    result: dict[str, list[TopObject]] = {}
    for kind, cls in KINDS.items():
        objs = draw(
            st.lists(
                objects_of(cls).filter(lambda o: o.uuid not in seen),
                max_size=3,
                unique_by=(lambda o: o.name, lambda o: o.uuid),
            )
        )
        seen.update(o.uuid for o in objs)
        result[kind] = objs
    return result
