"""moto speed-ups the benchmark needs at 1,000-10,000 instances (simulated-AWS side only).

Two hot spots of moto 5.2.5, neither of them product code:

1. EC2 tags. moto looks up a resource's tags with `describe_tags(resource-id=<id>)`,
   which scans the tags of *every* EC2 resource with a regex
   (`moto/ec2/models/core.py:TaggedEC2Resource.get_tags` ->
   `moto/ec2/models/tags.py:TagBackend.describe_tags`). DescribeInstances calls it at
   least twice per instance (tag filter, response), so one DescribeInstances over N
   instances is O(N^2): ~7 s of CPU at 1,000 instances, ~12 min at 10,000. The fast
   path reads the same dict directly and returns the same list (same keys, same order);
   ids carrying fnmatch wildcards, which the regex would treat as patterns, take moto's
   original path.

2. DynamoDB item responses. moto serialises every response with a generic,
   shape-walking serializer (`moto/core/serialize.py`, ~15 µs per attribute value):
   reading the 1,000 records of a migration (`store.records()`, 2 Query pages) costs
   ~6 s of CPU, and most handlers read them. The fast path (on
   `moto.dynamodb.responses.DynamoResult`) writes the item-carrying members (Items,
   Item, Attributes, LastEvaluatedKey, Responses), already in DynamoDB wire form, with
   `json.dumps` (binary values base64-encoded, as the serializer does); the rest of the
   response (Count, ConsumedCapacity, ...) still goes through moto's serializer, and
   anything unexpected takes moto's original path whole.

3. EC2 instance lookups by id. `InstanceBackend.get_instance` / `get_instance_by_id`
   copy every reservation and scan every instance per lookup; ELBv2
   DescribeTargetHealth looks up each target that way and volume creation looks up each
   new instance, so both are O(N^2) (~16 s of CPU for one DescribeTargetHealth of 2,400
   targets in a 3,000-instance account). The fast path keeps an id -> (reservation,
   instance) index, checks a hit is still in place and, on a miss, indexes reservations
   from the newest back until it finds the id, so it returns the very object moto's scan
   would (instance ids are unique).

4. The AMI of each new instance. `Instance.__init__` finds its image with
   `describe_images(filters={"image-id": id})`, a fnmatch over all ~1,300 AMIs moto
   ships (~3 ms per instance launched). With exactly that filter (an id without
   wildcards, nothing else) the fast path reads `amis[id]`.

None of them changes what the product sees, only how fast moto answers: `install(check=True)`
runs both paths on every call and raises on any difference. This module belongs next to
`spotctl/local/metric_index.py` (the runtime would install both); the benchmark installs
it itself until then.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from moto.core.responses import ActionResult
from moto.dynamodb.responses import DynamoResult
from moto.ec2.exceptions import InvalidInstanceIdError
from moto.ec2.models.amis import AmiBackend
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.models.instances import InstanceBackend
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

_ORIGINAL: Any = None
_CHECK = False
_WILDCARDS = set("*?[")
_INDEX_ATTR = "_spot_bench_instance_index"
_ORIGINAL_LOOKUPS: dict[str, Any] = {}
_ITEM_MEMBERS = ("Items", "Item", "Attributes", "LastEvaluatedKey", "Responses")


class SpeedupMismatch(AssertionError):
    """`install(check=True)`: a fast path answered differently from moto."""


def _get_tags(self: Any) -> list[dict[str, str]]:
    fast = _fast_get_tags(self)
    if _CHECK and fast != _ORIGINAL(self):
        raise SpeedupMismatch(f"tags of {self.id}: {fast!r} != {_ORIGINAL(self)!r}")
    return fast


def _fast_get_tags(self: Any) -> list[dict[str, str]]:
    resource_id = self.id
    if not resource_id:
        return []
    if _WILDCARDS.intersection(resource_id):
        return _ORIGINAL(self)
    tags = self.ec2_backend.tags.get(resource_id)
    if not tags:
        return []
    resource_type = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
    return [{"resource_id": resource_id, "key": k, "value": v, "resource_type": resource_type} for k, v in tags.items()]


class _Fallback(Exception):
    pass


def _string(v: Any) -> str:
    if not isinstance(v, str):
        raise _Fallback
    return v


def _boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise _Fallback
    return v


def _binary(v: Any) -> str:
    if not isinstance(v, bytes):
        raise _Fallback
    return base64.b64encode(v).decode("utf-8")


def _list_of(check: type, v: Any) -> list:
    if not isinstance(v, list) or not all(isinstance(x, check) for x in v):
        raise _Fallback
    return v


def _string_set(v: Any) -> list[str]:
    return list(_list_of(str, v))


def _binary_set(v: Any) -> list[str]:
    return [base64.b64encode(x).decode("utf-8") for x in _list_of(bytes, v)]


def _map(v: Any) -> dict:
    if not isinstance(v, dict):
        raise _Fallback
    return _item(v)


def _list(v: Any) -> list[dict]:
    if not isinstance(v, list):
        raise _Fallback
    return [_attribute_value(x) for x in v]


# DynamoDB type tag -> the value in wire form (raises _Fallback on a value of another Python type)
_ENCODERS: dict[str, Callable[[Any], Any]] = {
    "S": _string, "N": _string,
    "BOOL": _boolean, "NULL": _boolean,
    "B": _binary,
    "SS": _string_set, "NS": _string_set,
    "BS": _binary_set,
    "M": _map,
    "L": _list,
}


def _attribute_value(value: Any) -> dict:
    """One AttributeValue in wire form, as moto's JSON serializer would write it."""
    if not isinstance(value, dict) or len(value) != 1:
        raise _Fallback
    (kind, v), = value.items()
    encode = _ENCODERS.get(kind)
    if encode is None:
        raise _Fallback
    return {kind: encode(v)}


def _item(item: Any) -> dict:
    if not isinstance(item, dict) or not all(isinstance(k, str) for k in item):
        raise _Fallback
    return {k: _attribute_value(v) for k, v in item.items()}


def _member(name: str, value: Any) -> Any:
    if name == "Items":
        if not isinstance(value, list):
            raise _Fallback
        return [_item(i) for i in value]
    if name == "Responses":  # BatchGetItem: table -> [item]
        if not isinstance(value, dict) or not all(isinstance(v, list) for v in value.values()):
            raise _Fallback
        return {table: [_item(i) for i in items] for table, items in value.items()}
    return _item(value)


def _execute_result(self: ActionResult, context: Any) -> Any:
    fast = _fast_execute_result(self, context)
    if _CHECK:
        slow = ActionResult.execute_result(self, context)
        if (fast[0], json.loads(fast[2] or "{}")) != (slow[0], json.loads(slow[2] or "{}")) or fast[1] != slow[1]:
            raise SpeedupMismatch(f"DynamoDB {context.operation_model.name}: {fast!r} != {slow!r}")
    return fast


def _fast_execute_result(self: ActionResult, context: Any) -> Any:
    result = self.result
    members = _encoded_members(result, context)
    if members is None:
        return ActionResult.execute_result(self, context)
    rest = ActionResult({k: v for k, v in result.items() if k not in members})
    status, headers, body = rest.execute_result(context)
    document = json.loads(body) if body else {}
    document.update(members)
    return status, headers, json.dumps(document)


def _encoded_members(result: Any, context: Any) -> dict | None:
    """The item-carrying members of `result` in wire form; None: moto's serializer writes the whole response."""
    heavy = _heavy_members(result, context)
    if heavy is None:
        return None
    try:
        return {k: _member(k, result[k]) for k in heavy}
    except _Fallback:
        return None


def _heavy_members(result: Any, context: Any) -> list[str] | None:
    """The item-carrying members `result` has, if the operation's output shape declares them all."""
    heavy = [k for k in _ITEM_MEMBERS if isinstance(result, dict) and result.get(k) is not None]
    shape = getattr(context.operation_model, "output_shape", None)
    if not heavy or shape is None or any(k not in shape.members for k in heavy):
        return None
    return heavy


def _find_instance(backend: Any, instance_id: str) -> Any:
    index = backend.__dict__.setdefault(_INDEX_ATTR, {})
    hit = index.get(instance_id)
    if hit is not None and _in_place(backend, instance_id, *hit):
        return hit[1]
    # A miss is usually an instance just launched: index from the newest reservation back.
    for reservation in reversed(list(backend.reservations.values())):
        for instance in reservation.instances:
            index[instance.id] = (reservation, instance)
        hit = index.get(instance_id)
        if hit is not None and _in_place(backend, instance_id, *hit):
            return hit[1]
    index.pop(instance_id, None)
    return None


def _in_place(backend: Any, instance_id: str, reservation: Any, instance: Any) -> bool:
    return (instance.id == instance_id and backend.reservations.get(reservation.id) is reservation
            and any(i is instance for i in reservation.instances))


def _get_instance_by_id(self: Any, instance_id: str) -> Any:
    fast = _find_instance(self, instance_id)
    if _CHECK and fast is not _ORIGINAL_LOOKUPS["get_instance_by_id"](self, instance_id):
        raise SpeedupMismatch(f"get_instance_by_id({instance_id})")
    return fast


def _get_instance(self: Any, instance_id: str) -> Any:
    fast = _find_instance(self, instance_id)
    if _CHECK:
        try:
            slow = _ORIGINAL_LOOKUPS["get_instance"](self, instance_id)
        except InvalidInstanceIdError:
            slow = None
        if fast is not slow:
            raise SpeedupMismatch(f"get_instance({instance_id})")
    if fast is None:
        raise InvalidInstanceIdError(instance_id)
    return fast


def _describe_images(self: Any, ami_ids: Any = None, filters: Any = None, exec_users: Any = None,
                     owners: Any = None) -> Any:
    original = _ORIGINAL_LOOKUPS["describe_images"]
    wanted = _single_image_id(filters)
    if ami_ids or exec_users or owners or wanted is None:
        return original(self, ami_ids=ami_ids, filters=filters, exec_users=exec_users, owners=owners)
    fast = _image_by_id(self, wanted)
    if _CHECK and fast != original(self, ami_ids=ami_ids, filters=filters, exec_users=exec_users, owners=owners):
        raise SpeedupMismatch(f"describe_images(image-id={wanted})")
    return fast


def _single_image_id(filters: Any) -> str | None:
    """The image id of filters that are exactly {"image-id": id} or {"image-id": [id]}, id without wildcards."""
    wanted = filters.get("image-id") if isinstance(filters, dict) and len(filters) == 1 else None
    if isinstance(wanted, list) and len(wanted) == 1:
        wanted = wanted[0]
    if not isinstance(wanted, str) or _WILDCARDS.intersection(wanted):
        return None
    return wanted


def _image_by_id(backend: Any, image_id: str) -> list:
    ami = backend.amis.get(image_id)
    return [ami] if ami is not None and ami.id == image_id else []


def install(check: bool = False) -> None:
    global _ORIGINAL, _CHECK
    _CHECK = check
    if _ORIGINAL is None:
        _ORIGINAL = TaggedEC2Resource.get_tags
        TaggedEC2Resource.get_tags = _get_tags
        DynamoResult.execute_result = _execute_result
        _ORIGINAL_LOOKUPS.update(get_instance=InstanceBackend.get_instance,
                                 get_instance_by_id=InstanceBackend.get_instance_by_id,
                                 describe_images=AmiBackend.describe_images)
        InstanceBackend.get_instance = _get_instance
        InstanceBackend.get_instance_by_id = _get_instance_by_id
        AmiBackend.describe_images = _describe_images


def uninstall() -> None:
    global _ORIGINAL
    if _ORIGINAL is not None:
        TaggedEC2Resource.get_tags = _ORIGINAL
        _ORIGINAL = None
        if "execute_result" in DynamoResult.__dict__:
            del DynamoResult.execute_result
        for name, original in _ORIGINAL_LOOKUPS.items():
            setattr(AmiBackend if name == "describe_images" else InstanceBackend, name, original)
        _ORIGINAL_LOOKUPS.clear()
