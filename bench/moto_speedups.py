"""moto speed-ups the benchmark needs at 1,000-10,000 instances (simulated-AWS side only).

Hot spots of moto 5.2.5, none of them product code:

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

5. DynamoDB Query (`moto/dynamodb/models/table.py:Table.query`). The FilterExpression is
   parsed once a request and is cheap (0.4 % of the run below); what costs is around it.
   For every page moto sorts *all* the table's items (every partition, `DynamoType`
   comparisons), skips the previous pages item by item, sizes each item twice
   (`Item.size` rebuilds every map value), deep-copies the whole page (every copy also kept
   for good in `Item.instances_tracked`), and only then filters and projects
   (`Item.project` converts the whole item); on an index it does the same over all the
   table's items. At 2,000 instances (case A) the wave engine's unfinished-records query
   (`begins_with(sk, ...)` + the filter) was 15 % of the run, moto's query 13 % (deep copy
   6.4 %, sorting 3.1 %, sizes 2.7 %); after the product moved it to a sparse index and a
   projection (2c6d0c5), moto's index query was still 13 % of the time the GIL was held.
   One paged read of a 10,000-record partition with that filter (10 pages of 1 MB) spent
   4.3 s in `Table.query`, the plan's records 2.9 s, the sparse-index query 0.37 s.
   The fast path (on `Table.query`) takes a table, or an index with one hash and one range
   key, queried by a string hash key, whose key values are strings: the partition's items
   sorted by range key (the order is kept from page to page while the partition holds the
   same item objects in the same order), or the table's items with that index hash key
   sorted by (index keys, table keys): moto's order, as string keys are unique. It skips
   the previous pages by bisection with moto's own `_item_comes_before_dct`, runs moto's
   page loop (count and 1 MB limits, `DynamoType.compare` for the key condition) with each
   size computed once (`_item_size`, equal to `Item.size`), evaluates moto's parsed filter
   on the items themselves (it only reads) and copies only the items kept (`_copy_item`:
   new dicts, lists, maps and sets; scalar values shared, as moto never changes one in
   place; not tracked); a ProjectionExpression is applied (`Item.project`) to a copy
   reduced to the attributes its paths begin with (all `find_nested_key` reads). KEYS_ONLY
   and INCLUDE indexes project copies first, as moto does. Anything else (other key types,
   multi-attribute keys, QueryFilter, moto's errors) takes moto's query. The same reads:
   0.34 s, 1.2-1.6 s (mostly garbage collection: 0.55 s with it off), 0.05 s. The scale
   benchmark at 2,000 / 3,000 instances, case A: 192 -> 167 s / 305 -> 259 s real; moto's
   query 13 % -> 2.4 % of the time the GIL is held; peak RSS at 3,000: 1.19 -> 0.76 GB.

None of them changes what the product sees, only how fast moto answers: `install(check=True)`
runs both paths on every call and raises on any difference. This module belongs next to
`spotctl/local/metric_index.py` (the runtime would install both); the benchmark installs
it itself until then.
"""

from __future__ import annotations

import base64
import copy
import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from moto.core.responses import ActionResult
from moto.dynamodb.models import table as table_module
from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
from moto.dynamodb.models.table import Table
from moto.dynamodb.models.utilities import dynamo_to_dict
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
_SET_TYPES = ("SS", "NS", "BS")
_CONTAINER_TYPES = ("L", "M", *_SET_TYPES)
_OWNERS: dict[str, type] = {"describe_images": AmiBackend, "query": Table}  # InstanceBackend otherwise
# id(partition) -> (partition, hash key, its items in dict order, in range-key order): see _partition
_SORTED_PARTITIONS: dict[int, tuple[dict[Any, Item], str, list[Item], list[Item]]] = {}
_MAX_SORTED_PARTITIONS = 64
_LIST_ELEMENT = re.compile(r"(.+)\[(\d+)\]$")  # as moto's find_nested_key


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


def _query(self: Table, hash_key: Any, range_comparison: Any, range_objs: Any, limit: Any, exclusive_start_key: Any,
           scan_index_forward: Any, projection_expressions: Any, index_name: Any = None, consistent_read: Any = False,
           filter_expression: Any = None, hash_key_conditions: Any = None, range_key_conditions: Any = None,
           **filter_kwargs: Any) -> Any:
    def slow() -> Any:
        return _ORIGINAL_LOOKUPS["query"](
            self, hash_key, range_comparison, range_objs, limit, exclusive_start_key, scan_index_forward,
            projection_expressions, index_name, consistent_read, filter_expression,
            hash_key_conditions=hash_key_conditions, range_key_conditions=range_key_conditions, **filter_kwargs)

    plan = None if filter_kwargs else _plan(self, hash_key, index_name, consistent_read, hash_key_conditions,
                                            range_key_conditions)
    if plan is None:
        return slow()

    def fast() -> Any:
        ordered = plan.candidates if scan_index_forward is not False else plan.candidates[::-1]
        start = _page_start(self, plan, ordered, exclusive_start_key, scan_index_forward)
        results, scanned, last_key = _page(self, plan, ordered[start:], limit, range_comparison, range_objs)
        return _finish(plan, results, filter_expression, projection_expressions), scanned, last_key

    return _checked_query(self, plan.candidates, fast, slow) if _CHECK else fast()


@dataclass
class _Plan:
    """What moto's query would page through, in its order, and how it reads the keys."""

    candidates: list[Item]  # the items of the partition (of the index), in moto's forward order
    hash_attrs: list[str]  # moto's hash_attrs and range_attrs (index keys first, then the table's)
    range_attrs: list[str | None]
    range_attr: str | None  # the attribute the key condition's range comparison reads
    index: Any = None  # the index queried (None: the table)

    @property
    def index_name(self) -> str | None:
        return self.index.name if self.index is not None else None


def _plan(table: Table, hash_key: Any, index_name: Any, consistent_read: Any, hash_key_conditions: Any,
          range_key_conditions: Any) -> _Plan | None:
    """The fast path's plan, or None where moto's own query runs (its errors, other key types)."""
    last_range_key_name = range_key_conditions[-1][0] if range_key_conditions else None
    if index_name:
        return _index_plan(table, index_name, consistent_read, hash_key_conditions, range_key_conditions)
    candidates = _partition(table, hash_key)
    if candidates is None:
        return None
    return _Plan(candidates, [table.hash_key_attr], [table.range_key_attr], last_range_key_name)


def _index_plan(table: Table, index_name: str, consistent_read: Any, hash_key_conditions: Any,
                range_key_conditions: Any) -> _Plan | None:
    """An index with one hash and one range key, queried by its hash key (a string): every item
    of the table that has both index keys and that hash key, in moto's order (index keys, then
    the table's; all strings and unique, so plain string tuples sort them the same)."""
    index = {i.name: i for i in table.all_indexes()}.get(index_name)
    if index is None or (consistent_read and index in table.global_indexes) or not table.range_key_attr:
        return None
    keys = _index_keys(index, hash_key_conditions, range_key_conditions)
    if keys is None:
        return None
    hash_attr, range_attr, expected = keys
    plan = _Plan([], [hash_attr, table.hash_key_attr], [range_attr, table.range_key_attr],
                 range_key_conditions[-1][0] if range_key_conditions else range_attr, index)
    candidates = _index_items(table, plan, expected)
    if candidates is None:
        return None
    plan.candidates = candidates
    return plan


def _index_keys(index: Any, hash_key_conditions: Any, range_key_conditions: Any
                ) -> tuple[str, str, DynamoType] | None:
    """The index's hash and range key and the hash key's value, if it has one of each and the key
    condition names the hash key (a string) and at most one range key."""
    hash_attr, range_attr = _only_key(index, "HASH"), _only_key(index, "RANGE")
    conditions = list(hash_key_conditions or [])
    if hash_attr is None or range_attr is None or len(range_key_conditions or []) > 1:
        return None
    if [name for name, _ in conditions] != [hash_attr] or not _is_string(conditions[0][1]):
        return None
    return hash_attr, range_attr, conditions[0][1]


def _only_key(index: Any, kind: str) -> str | None:
    names = [k["AttributeName"] for k in index.schema if k["KeyType"] == kind]
    return names[0] if len(names) == 1 else None


def _index_items(table: Table, plan: _Plan, expected: DynamoType) -> list[Item] | None:
    hash_attr, range_attr = plan.hash_attrs[0], plan.range_attrs[0]
    assert range_attr is not None
    sort_attrs = table._generate_attr_to_sort_by(plan.hash_attrs, plan.range_attrs)
    matched = [item for item in _table_items(table) if _in_index(item, hash_attr, expected, range_attr)]
    keys = [_string_key(item, sort_attrs) for item in matched]
    if any(key is None for key in keys):
        return None
    return [item for _, item in sorted(zip(keys, matched, strict=True), key=operator.itemgetter(0))]


def _table_items(table: Table) -> list[Any]:
    return [item for partition in table.items.values() for item in partition.values()]


def _in_index(item: Any, hash_attr: str, expected: DynamoType, range_attr: str) -> bool:
    """moto's test of an item for an index query: an Item with that index hash key and the range key."""
    if not isinstance(item, Item):
        return False
    value = item.attrs.get(hash_attr)
    if not value:
        return False
    if type(value) is DynamoType and value.type == "S":
        same = value.value == expected.value
    else:
        same = not operator.ne(value, expected)
    return bool(same and item.attrs.get(range_attr))


def _string_key(item: Item, attrs: list[str]) -> tuple[str, ...] | None:
    values = [item.attrs.get(attr) for attr in attrs]
    return tuple(v.value for v in values) if all(_is_string(v) for v in values) else None  # type: ignore[union-attr]


def _partition(table: Table, hash_key: Any) -> list[Item] | None:
    """The items of the queried partition in range-key order, as moto would sort them, or None
    when the table or keys are not plain strings (moto's own query then runs)."""
    if not table.range_key_attr or not _is_string(hash_key):
        return None
    partition = table.items.get(hash_key)
    if not isinstance(partition, dict):
        return None if partition is not None else []
    items = list(partition.values())
    ordered = _sorted_before(partition, hash_key.value, items)
    if ordered is not None:
        return ordered
    if not all(_in_partition(item, hash_key) for item in items):
        return None
    # distinct strings: moto's sorts (by hash and range key, then by range key) give this order
    ordered = sorted(items, key=lambda item: cast(DynamoType, item.range_key).value)
    if len(_SORTED_PARTITIONS) >= _MAX_SORTED_PARTITIONS:
        _SORTED_PARTITIONS.clear()
    _SORTED_PARTITIONS[id(partition)] = (partition, hash_key.value, items, ordered)
    return ordered


def _sorted_before(partition: dict[Any, Item], hash_value: str, items: list[Item]) -> list[Item] | None:
    """The order an earlier page of this partition found, while it holds the very same items in
    the same (insertion) order: a put replaces an item object, a delete shortens the list."""
    cached = _SORTED_PARTITIONS.get(id(partition))
    if cached is None or cached[0] is not partition or cached[1] != hash_value or not _same(cached[2], items):
        return None
    return cached[3]


def _same(cached: list[Item], items: list[Item]) -> bool:
    return len(cached) == len(items) and all(map(operator.is_, cached, items))


def _is_string(value: Any) -> bool:
    return type(value) is DynamoType and value.type == "S" and isinstance(value.value, str)


def _in_partition(item: Any, hash_key: DynamoType) -> bool:
    return (isinstance(item, Item) and _is_string(item.hash_key) and item.hash_key.value == hash_key.value
            and _is_string(item.range_key))


def _page_start(table: Table, plan: _Plan, items: list[Item], start_key: Any, forward: Any) -> int:
    """How many of `items` moto skips as the previous page: those `_item_comes_before_dct` the
    start key. In key order (all strings) they are a prefix, found by bisection."""
    if start_key is None:
        return 0

    def before(item: Item) -> bool:
        return bool(table._item_comes_before_dct(item, start_key, plan.hash_attrs, plan.range_attrs, forward))

    sort_attrs = table._generate_attr_to_sort_by(plan.hash_attrs, plan.range_attrs)
    if not (isinstance(start_key, dict) and all(_is_string_value(start_key.get(a)) for a in sort_attrs)):
        return next((i for i, item in enumerate(items) if not before(item)), len(items))
    low, high = 0, len(items)
    while low < high:
        middle = (low + high) // 2
        if before(items[middle]):
            low = middle + 1
        else:
            high = middle
    return low


def _is_string_value(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("S"), str)


def _page(table: Table, plan: _Plan, items: list[Item], limit: Any, range_comparison: Any,
          range_objs: Any) -> tuple[list[Item], int, Any]:
    """moto's page loop (count and 1 MB limits, key condition), each item's size computed once."""
    results: list[Item] = []
    result_size = scanned_count = 0
    for item in items:
        size = _item_size(item)
        if len(results) == limit or result_size + size > table_module.RESULT_SIZE_LIMIT:
            return results, scanned_count, table._get_last_evaluated_key(results[-1], plan.index_name)
        if range_comparison and not _in_range(plan, item, range_comparison, range_objs):
            continue
        results.append(item)
        result_size += size
        scanned_count += 1
    return results, scanned_count, None


def _in_range(plan: _Plan, item: Item, range_comparison: str, range_objs: Any) -> bool:
    value: Any = item.attrs.get(plan.range_attr) if plan.range_attr else None
    if not value:
        if plan.index is not None:
            return False
        value = item.range_key  # a table query without the range key attribute named: the item's range key
    return bool(value.compare(range_comparison, range_objs))


def _finish(plan: _Plan, results: list[Item], filter_expression: Any, projection_expressions: Any) -> list[Item]:
    """moto copies the page, projects it on the index, filters, applies the projection expression.
    Filtering and projecting read only, so the fast path filters the items themselves and copies
    what is left (only what the projection expression keeps, when there is one)."""
    if plan.index is not None and not _projects_all(plan.index):
        return _filtered([plan.index.project(_copy_item(r)) for r in results], filter_expression,
                         projection_expressions, Item.project)
    return _filtered(results, filter_expression, projection_expressions, _project, _copy_item)


def _filtered(results: list[Item], filter_expression: Any, projection_expressions: Any,
              project: Callable[[Item, Any], Item], copy_item: Callable[[Item], Item] = lambda item: item,
              ) -> list[Item]:
    if filter_expression is not None:
        results = [r for r in results if filter_expression.expr(r)]
    if projection_expressions:
        return [project(r, projection_expressions) for r in results]
    return [copy_item(r) for r in results]


def _projects_all(index: Any) -> bool:
    """`SecondaryIndex.project` returns the item itself (ProjectionType ALL)."""
    return not index.projection or index.projection.get("ProjectionType", None) not in ("KEYS_ONLY", "INCLUDE")


def _project(item: Item, projection_expressions: list[list[str]]) -> Item:
    """`item.project(projection_expressions)` of a copy of the item reduced to the attributes the
    paths begin with (`Item.project` converts the whole item; `find_nested_key` reads only those)."""
    names = set()
    for path in projection_expressions:
        names.add(path[0])
        element = _LIST_ELEMENT.match(path[0])
        if element:
            names.add(element.group(1))
    slim = object.__new__(Item)
    slim.hash_key = _copy_value(item.hash_key)
    slim.range_key = _copy_value(item.range_key)
    slim.attrs = LimitedSizeDict.__new__(LimitedSizeDict)
    dict.__init__(slim.attrs)
    for key, value in item.attrs.items():
        if key in names:
            dict.__setitem__(slim.attrs, key, value)
    return slim.project(projection_expressions)


def _item_size(item: Item) -> int:
    """`Item.size()` without the copies moto's `DynamoType.size` makes of every map value."""
    total = 0
    for key, value in item.attrs.items():
        total += (len(key.encode("utf-8")) if type(key) is str else _bytesize(key)) + _value_size(value)
    return total


def _value_size(value: Any) -> int:
    """`value.size()` (`DynamoType.size`), the common types first."""
    if type(value) is not DynamoType:
        return int(value.size())
    kind, inner = value.type, value.value
    if kind == "S" and type(inner) is str:
        return len(inner.encode("utf-8"))
    if kind == "N":
        return len(str(inner))
    if kind == "M":
        return _map_size(inner)
    if kind == "L":
        return sum(map(_value_size, inner))
    if kind in _SET_TYPES:
        return sum(_scalar_size(kind[0], v) for v in inner)
    return _scalar_size(kind, inner)


def _map_size(inner: Any) -> int:
    total = 0
    for key, value in inner.items():
        total += _bytesize(key) + _value_size(value if type(value) is DynamoType else DynamoType(value))
    return total


def _scalar_size(kind: str, value: Any) -> int:
    if kind == "N":
        return len(str(value))
    return 1 if isinstance(value, bool) else _bytesize(value)


def _bytesize(value: Any) -> int:
    return len(value if isinstance(value, bytes) else value.encode("utf-8"))


def _copy_item(item: Item) -> Item:
    """A copy of the item as `copy.deepcopy` (`Item.__deepcopy__`) makes it, as far as anyone can
    tell: new attribute dict, lists, maps and sets, all the way down; the scalar values (S, N, B,
    BOOL, NULL) are shared, as moto never changes one in place (an update puts a new one; only
    lists, maps and sets are changed in place). Not added to `Item.instances_tracked` either
    (moto's `BaseModel.__new__` keeps every instance ever made, copies included, until reset)."""
    if type(item) is not Item or type(item.attrs) is not LimitedSizeDict:
        return copy.deepcopy(item)
    result = object.__new__(Item)
    result.hash_key = _copy_value(item.hash_key)
    result.range_key = _copy_value(item.range_key)
    attrs = LimitedSizeDict.__new__(LimitedSizeDict)
    dict.__init__(attrs)
    for key, value in item.attrs.items():
        dict.__setitem__(attrs, key, _copy_value(value))  # as Item.__deepcopy__: no size check again
    result.attrs = attrs
    return result


def _copy_value(value: Any) -> Any:
    """`DynamoType.__deepcopy__` for lists, maps and sets; a scalar is its own copy."""
    if type(value) is not DynamoType:
        return copy.deepcopy(value)
    kind = value.type
    if kind not in _CONTAINER_TYPES:
        return value
    result = DynamoType.__new__(DynamoType)
    result.type, inner = kind, value.value
    if kind == "L":
        result.value = [_copy_value(v) for v in inner]
    elif kind == "M":
        result.value = {k: _copy_value(v) for k, v in inner.items()}
    else:
        result.value = list(inner)
    return result


def _checked_query(table: Table, candidates: list[Item], fast: Callable[[], Any], slow: Callable[[], Any]) -> Any:
    fast_result, fast_error = _outcome(fast)
    slow_result, slow_error = _outcome(slow)
    if _error_view(fast_error) != _error_view(slow_error):
        raise SpeedupMismatch(f"query of {table.name}: {fast_error!r} != {slow_error!r}")
    if fast_error is not None:
        raise fast_error
    live = {id(item) for item in candidates}
    if _query_view(fast_result) != _query_view(slow_result) or any(id(i) in live for i in fast_result[0]):
        raise SpeedupMismatch(f"query of {table.name}: {_query_view(fast_result)} != {_query_view(slow_result)}")
    return fast_result


def _outcome(call: Callable[[], Any]) -> tuple[Any, Exception | None]:
    try:
        return call(), None
    except Exception as exc:  # noqa: BLE001  (compared with moto's, then raised again)
        return None, exc


def _error_view(error: Exception | None) -> tuple[Any, str] | None:
    return None if error is None else (type(error), str(error))


def _query_view(result: Any) -> str:
    """Items (type, keys, attributes in order), ScannedCount and LastEvaluatedKey, as a string."""
    items, scanned_count, last_key = result
    return repr(([(type(i), dynamo_to_dict([i.hash_key, i.range_key, dict(i.attrs)])) for i in items],
                 scanned_count, dynamo_to_dict(last_key)))


def install(check: bool = False) -> None:
    global _ORIGINAL, _CHECK
    _CHECK = check
    if _ORIGINAL is None:
        _ORIGINAL = TaggedEC2Resource.get_tags
        TaggedEC2Resource.get_tags = _get_tags
        DynamoResult.execute_result = _execute_result
        _ORIGINAL_LOOKUPS.update(get_instance=InstanceBackend.get_instance,
                                 get_instance_by_id=InstanceBackend.get_instance_by_id,
                                 describe_images=AmiBackend.describe_images, query=Table.query)
        InstanceBackend.get_instance = _get_instance
        InstanceBackend.get_instance_by_id = _get_instance_by_id
        AmiBackend.describe_images = _describe_images
        Table.query = _query  # type: ignore[method-assign]


def uninstall() -> None:
    global _ORIGINAL
    if _ORIGINAL is not None:
        TaggedEC2Resource.get_tags = _ORIGINAL
        _ORIGINAL = None
        if "execute_result" in DynamoResult.__dict__:
            del DynamoResult.execute_result
        for name, original in _ORIGINAL_LOOKUPS.items():
            setattr(_OWNERS.get(name, InstanceBackend), name, original)
        _ORIGINAL_LOOKUPS.clear()
        _SORTED_PARTITIONS.clear()
