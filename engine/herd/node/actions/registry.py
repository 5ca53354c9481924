"""Registry of node actions and validation of their arguments from type hints.

An action is a plain function ``fn(ctx, **args) -> dict``.  Its signature *is* the
request schema: argument names, types and defaults come from the annotations, so the
documentation, the validation and the code cannot drift apart.  Every request is checked
before the action runs, and a bad field is reported as a ValidationError naming it,
because the master needs to know which of its arguments was wrong, not just that the
node refused.

Every action must be idempotent and report ``changed`` in its result: the master
retries and Ansible reports changes, and both depend on a replay being harmless.
"""

from __future__ import annotations

import inspect
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.errors import HerdError, NotFoundError, ValidationError

DEFAULT_NODE_ROOT = "/var/lib/herd-node"
ROOT_ENV = "HERD_NODE_ROOT"

ActionFn = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class NodeContext:
    """What an action may know about the node it runs on.

    The state root is passed in rather than read by each action so tests (and lab
    nodes) can point it anywhere without touching the real /var/lib.
    """

    root: Path

    @classmethod
    def from_env(cls) -> NodeContext:
        return cls(root=Path(os.environ.get(ROOT_ENV) or DEFAULT_NODE_ROOT))


@dataclass(frozen=True)
class Param:
    name: str
    annotation: Any
    required: bool
    default: Any


@dataclass(frozen=True)
class Action:
    name: str
    fn: ActionFn
    params: tuple[Param, ...]

    def validate(self, args: Any) -> dict[str, Any]:
        """Checked, defaulted keyword arguments for ``fn``; ValidationError names the field."""
        if not isinstance(args, dict):
            raise ValidationError("args", args, "a JSON object")
        known = {p.name for p in self.params}
        for key in args:
            if key not in known:
                raise ValidationError(key, args[key], f"one of the fields {sorted(known)}")
        checked: dict[str, Any] = {}
        for param in self.params:
            if param.name in args:
                checked[param.name] = _check_type(param.name, args[param.name], param.annotation)
            elif param.required:
                raise ValidationError(
                    param.name, None, _describe(param.annotation), f"missing field '{param.name}'"
                )
            else:
                checked[param.name] = param.default
        return checked


_REGISTRY: dict[str, Action] = {}


def action(name: str) -> Callable[[ActionFn], ActionFn]:
    """Register ``fn`` as node action ``name`` (its first parameter receives the context)."""

    def register(fn: ActionFn) -> ActionFn:
        if name in _REGISTRY:
            raise ValueError(f"node action {name!r} registered twice")
        hints = typing.get_type_hints(fn)
        params = []
        for pname, p in list(inspect.signature(fn).parameters.items())[1:]:
            if pname not in hints:
                raise TypeError(f"action {name}: parameter {pname} has no type hint")
            _check_supported(name, pname, hints[pname])
            params.append(
                Param(pname, hints[pname], p.default is inspect.Parameter.empty, p.default)
            )
        _REGISTRY[name] = Action(name, fn, tuple(params))
        return fn

    return register


def get_action(name: Any) -> Action:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise NotFoundError(f"unknown node action {name!r}", field="action", value=str(name))
    return _REGISTRY[name]


def action_names() -> list[str]:
    return sorted(_REGISTRY)


def dispatch(ctx: NodeContext, name: Any, args: Any) -> dict[str, Any]:
    """Validate and run one action; the result must be a dict that says what changed."""
    act = get_action(name)
    result = act.fn(ctx, **act.validate({} if args is None else args))
    if not isinstance(result, dict) or not isinstance(result.get("changed"), bool):
        raise HerdError(f"node action {act.name} did not report 'changed'", action=act.name)
    return result


def _check_type(field: str, value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            try:
                return _check_type(field, value, option)
            except ValidationError:
                continue
        raise ValidationError(field, value, _describe(annotation))
    if annotation is type(None):
        if value is None:
            return None
    elif annotation is Any:
        return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation in (str, int, bool):
        # bool is an int in Python but never a valid count, size or mode.
        if isinstance(value, annotation) and not (annotation is int and isinstance(value, bool)):
            return value
    elif origin is list:
        if isinstance(value, list):
            (item_type,) = typing.get_args(annotation) or (Any,)
            return [_check_type(f"{field}[{i}]", v, item_type) for i, v in enumerate(value)]
    elif (origin is dict or annotation is dict) and (
        isinstance(value, dict) and all(isinstance(k, str) for k in value)
    ):
        return value
    raise ValidationError(field, value, _describe(annotation))


_SCALARS = (str, int, bool, float, type(None), Any, dict)


def _check_supported(action_name: str, param: str, annotation: Any) -> None:
    """Refuse at import time a parameter type the validator cannot check."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, dict):
        for inner in typing.get_args(annotation):
            _check_supported(action_name, param, inner)
    elif annotation not in _SCALARS:
        raise TypeError(f"action {action_name}: unsupported type {annotation!r} for {param}")


def _describe(annotation: Any) -> str:
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")
