"""Parameter inheritance: cluster defaults, overridden by the group, overridden by the object.

Objects store only what they override, so changing a cluster default reaches every
instance that did not pin its own value. This is how Ganeti fills hv/be/nd/disk params.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def fill_params(
    cluster_level: Mapping[str, Any] | None,
    group_level: Mapping[str, Any] | None,
    instance_level: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The effective parameters: each later level overrides the earlier ones key by key.

    Where two levels both hold a mapping under the same key (params kept per hypervisor or
    per disk template), the mappings are merged the same way instead of replaced, so a
    group can override one kvm setting without repeating the others. The result shares no
    containers with the inputs, so callers may modify it freely.
    """
    result: dict[str, Any] = {}
    for level in (cluster_level, group_level, instance_level):
        if level:
            _merge_into(result, level)
    return result


def _merge_into(target: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            current = target.get(key)
            if not isinstance(current, dict):
                current = target[key] = {}
            _merge_into(current, value)
        else:
            target[key] = copy.deepcopy(value)
