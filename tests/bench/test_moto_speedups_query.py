"""bench/moto_speedups.py, speed-up 5 (moto's DynamoDB Query): every query answers exactly as
moto's own (items, order, Count, ScannedCount, LastEvaluatedKey, 1 MB pages, errors), on the
table and on indexes, with and without filters and projections."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.dynamodb.models.dynamo_type import DynamoType, Item

from bench import moto_speedups

TABLE = "speedups"
STRINGS = ("plain", "ünïcödé ✓", "", "R#0007", "x" * 40)


def _random_value(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    kinds = ["S", "N", "BOOL", "NULL", "SS", "NS", "B", "BS"] + (["L", "M"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "S":
        return {"S": rng.choice(STRINGS) + str(rng.randint(0, 99))}
    if kind == "N":
        return {"N": rng.choice(["0", "7", "-3.25", "1e3", "123456789012345678901234567890", "0.000001"])}
    if kind in ("BOOL", "NULL"):
        return {kind: kind == "NULL" or rng.random() < 0.5}
    if kind == "SS":
        return {"SS": sorted({rng.choice(STRINGS) + str(i) for i in range(rng.randint(1, 4))})}
    if kind == "NS":
        return {"NS": sorted({str(rng.randint(0, 1000)) for _ in range(rng.randint(1, 4))})}
    if kind == "B":
        return {"B": bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 20)))}
    if kind == "BS":
        return {"BS": list({bytes([i, rng.randint(0, 255)]) for i in range(rng.randint(1, 3))})}
    if kind == "L":
        return {"L": [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]}
    return {"M": {f"k{i}": _random_value(rng, depth + 1) for i in range(rng.randint(0, 4))}}


def _items() -> Iterator[dict[str, Any]]:
    rng = random.Random(5)
    for n in range(300):  # one large partition, records around other items
        item = {"pk": {"S": "P0"}, "sk": {"S": f"R#{n:04d}"}, "wave": {"N": str(n % 3)},
                "eligible": {"BOOL": n % 7 != 0}, "status": {"S": rng.choice(["planned", "launching", "migrated"])},
                "tagged": {"BOOL": rng.random() < 0.5}, "name": {"S": rng.choice(STRINGS)},
                "m": {"M": {"x": {"S": "ẋ"}, "y": {"L": [{"N": "1"}, {"S": "two"}]}}},
                "l": {"L": [{"S": "a"}, {"N": "2"}, {"M": {"z": {"S": "zz"}}}]}}
        item.update({f"a{i}": _random_value(rng) for i in range(rng.randint(0, 6))})
        if n % 4:
            item.update({"gsi1pk": {"S": f"G#{n % 2}"}, "gsi1sk": {"S": f"{rng.randint(0, 40):03d}"}})
        if n % 5 == 0:
            item.update({"gsi2pk": {"S": "K"}, "gsi2sk": {"S": f"{n:05d}"}})
        yield item
    for sk in ("META", "V#a", "V#b", "Q", "R#", "R#9999Z"):
        yield {"pk": {"S": "P0"}, "sk": {"S": sk}, "wave": {"N": "1"}, "status": {"S": "planned"},
               "gsi1pk": {"S": "G#0"}, "gsi1sk": {"S": "000"}}
    for n in range(30):  # large items: 1 MB pages of ~11 items
        yield {"pk": {"S": "P1"}, "sk": {"S": f"B#{n:03d}"}, "blob": {"S": "é" * 45_000 + str(n)},
               "gsi1pk": {"S": "G#big"}, "gsi1sk": {"S": f"{n % 4}"}}
    for n in range(50):  # many small partitions
        yield {"pk": {"S": f"X{n:02d}"}, "sk": {"S": "META"}, "gsi1pk": {"S": "G#1"}, "gsi1sk": {"S": f"{n:03d}"}}


def _create(client: Any) -> None:
    strings = ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk")
    client.create_table(
        TableName=TABLE, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in strings],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {"IndexName": "all", "Projection": {"ProjectionType": "ALL"},
             "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"},
                           {"AttributeName": "gsi1sk", "KeyType": "RANGE"}]},
            {"IndexName": "keys", "Projection": {"ProjectionType": "KEYS_ONLY"},
             "KeySchema": [{"AttributeName": "gsi2pk", "KeyType": "HASH"},
                           {"AttributeName": "gsi2sk", "KeyType": "RANGE"}]},
            {"IndexName": "hash_only", "Projection": {"ProjectionType": "ALL"},
             "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"}]},
        ])
    for item in _items():
        client.put_item(TableName=TABLE, Item=item)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """The table; the speed-ups as the session had them afterwards (bench.pytest_speedups installs them)."""
    installed, checking = moto_speedups._ORIGINAL is not None, moto_speedups._CHECK
    moto_speedups.uninstall()
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        _create(dynamodb)
        yield dynamodb
    moto_speedups.uninstall()
    if installed:
        moto_speedups.install(check=checking)


def _answer(client: Any, kwargs: dict[str, Any]) -> Any:
    try:
        response = client.query(TableName=TABLE, **copy.deepcopy(kwargs))
    except ClientError as exc:
        return "error", exc.response["Error"]
    except Exception as exc:  # noqa: BLE001  (moto's own crashes, e.g. on a start key without the index keys)
        return "crash", type(exc).__name__, str(exc)
    response.pop("ResponseMetadata", None)
    return response


def _pages(client: Any, kwargs: dict[str, Any]) -> list[Any]:
    """Every page of the query, following LastEvaluatedKey (at most 40 pages)."""
    pages, kwargs = [], dict(kwargs)
    for _ in range(40):
        page = _answer(client, kwargs)
        pages.append(page)
        if not isinstance(page, dict) or "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return pages


def _query(key: str, values: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"KeyConditionExpression": key, "ExpressionAttributeValues": values, **extra}


P0 = {":p": {"S": "P0"}}
FILTER = ("wave = :w AND eligible = :t AND (#s IN (:a, :b) OR (#s = :m AND tagged = :f))")
FILTER_VALUES = {":w": {"N": "1"}, ":t": {"BOOL": True}, ":a": {"S": "planned"}, ":b": {"S": "launching"},
                 ":m": {"S": "migrated"}, ":f": {"BOOL": False}}
QUERIES: dict[str, dict[str, Any]] = {
    "partition": _query("pk = :p", P0),
    "partition, backwards": _query("pk = :p", P0, ScanIndexForward=False),
    "begins_with": _query("pk = :p AND begins_with(sk, :r)", {**P0, ":r": {"S": "R#"}}),
    "in_flight filter": _query("pk = :p AND begins_with(sk, :r)", {**P0, ":r": {"S": "R#"}, **FILTER_VALUES},
                               FilterExpression=FILTER, ExpressionAttributeNames={"#s": "status"},
                               ConsistentRead=True),
    "in_flight filter, limit 7, backwards": _query(
        "pk = :p AND begins_with(sk, :r)", {**P0, ":r": {"S": "R#"}, **FILTER_VALUES}, FilterExpression=FILTER,
        ExpressionAttributeNames={"#s": "status"}, Limit=7, ScanIndexForward=False),
    "between, limit 1": _query("pk = :p AND sk BETWEEN :a AND :b", {**P0, ":a": {"S": "R#0010"},
                                                                    ":b": {"S": "R#0090"}}, Limit=1),
    "less than": _query("pk = :p AND sk < :a", {**P0, ":a": {"S": "R#0100"}}, Limit=33),
    "greater or equal, backwards": _query("pk = :p AND sk >= :a", {**P0, ":a": {"S": "R#0250"}},
                                          ScanIndexForward=False),
    "equal": _query("pk = :p AND sk = :a", {**P0, ":a": {"S": "R#0042"}}),
    "functions": _query("pk = :p", {**P0, ":n": {"N": "3"}, ":s": {"S": "ü"}},
                        FilterExpression="attribute_exists(a1) AND (size(#n) > :n OR contains(#n, :s)) "
                                         "OR attribute_type(a2, :t) OR begins_with(#n, :s)",
                        ExpressionAttributeNames={"#n": "name"},
                        ExpressionAttributeValues={**P0, ":n": {"N": "3"}, ":s": {"S": "ü"}, ":t": {"S": "M"}}),
    "projection": _query("pk = :p", P0, ProjectionExpression="sk, m.x, l[2].z, l[1], #n, a3, missing",
                         ExpressionAttributeNames={"#n": "name"}, Limit=60),
    "projection and filter": _query("pk = :p", {**P0, ":w": {"N": "2"}}, ProjectionExpression="wave, m.y[1]",
                                    FilterExpression="wave = :w"),
    "count": _query("pk = :p", P0, Select="COUNT"),
    "large items": _query("pk = :p", {":p": {"S": "P1"}}),
    "large items, backwards, filter": _query("pk = :p", {":p": {"S": "P1"}, ":x": {"S": "B#010"}},
                                             ScanIndexForward=False, FilterExpression="sk > :x"),
    "no partition": _query("pk = :p", {":p": {"S": "nowhere"}}),
    "index": _query("gsi1pk = :g", {":g": {"S": "G#0"}}, IndexName="all"),
    "index, range, backwards": _query("gsi1pk = :g AND gsi1sk BETWEEN :a AND :b",
                                      {":g": {"S": "G#1"}, ":a": {"S": "005"}, ":b": {"S": "030"}},
                                      IndexName="all", ScanIndexForward=False, Limit=9),
    "index, projection of its sort key": _query("gsi1pk = :g", {":g": {"S": "G#1"}}, IndexName="all",
                                                ProjectionExpression="gsi1sk"),
    "index, filter": _query("gsi1pk = :g AND begins_with(gsi1sk, :z)",
                            {":g": {"S": "G#0"}, ":z": {"S": "0"}, ":w": {"N": "1"}},
                            IndexName="all", FilterExpression="wave = :w", Limit=20),
    "index, large items": _query("gsi1pk = :g", {":g": {"S": "G#big"}}, IndexName="all"),
    "keys-only index, filter": _query("gsi2pk = :g", {":g": {"S": "K"}, ":w": {"N": "1"}}, IndexName="keys",
                                      FilterExpression="wave = :w OR attribute_not_exists(wave)", Limit=11),
    "hash-only index": _query("gsi1pk = :g", {":g": {"S": "G#1"}}, IndexName="hash_only", Limit=25),
    "consistent read of an index": _query("gsi1pk = :g", {":g": {"S": "G#0"}}, IndexName="all",
                                          ConsistentRead=True),
    "unknown index": _query("gsi1pk = :g", {":g": {"S": "G#0"}}, IndexName="nope"),
    "start key of another partition": _query("pk = :p", P0, Limit=5,
                                             ExclusiveStartKey={"pk": {"S": "P1"}, "sk": {"S": "B#003"}}),
    "start key between items": _query("pk = :p", P0, Limit=5,
                                      ExclusiveStartKey={"pk": {"S": "P0"}, "sk": {"S": "R#0100x"}}),
    "index, start key of the table only": _query("gsi1pk = :g", {":g": {"S": "G#1"}}, IndexName="all", Limit=5,
                                                 ExclusiveStartKey={"pk": {"S": "X03"}, "sk": {"S": "META"}}),
}


@pytest.mark.parametrize("name", list(QUERIES))
def test_every_page_is_moto_s_own(client: Any, name: str) -> None:
    moto_speedups.uninstall()
    expected = _pages(client, QUERIES[name])
    moto_speedups.install()
    try:
        fast = _pages(client, QUERIES[name])
    finally:
        moto_speedups.uninstall()
    assert fast == expected


@pytest.mark.parametrize("name", list(QUERIES))
def test_check_mode_finds_no_difference(client: Any, name: str) -> None:
    moto_speedups.install(check=True)
    try:
        pages = _pages(client, QUERIES[name])
    finally:
        moto_speedups.uninstall()
    assert pages


def test_queries_cover_paging_and_errors(client: Any) -> None:
    """The cases above include multi-page answers (by count and by the 1 MB limit) and errors."""
    pages = {name: _pages(client, kwargs) for name, kwargs in QUERIES.items()}
    assert len(pages["large items"]) >= 3 and len(pages["in_flight filter, limit 7, backwards"]) > 10
    assert pages["large items"][0]["Count"] < 30 and pages["in_flight filter"][0]["ScannedCount"] > 0
    assert pages["unknown index"][0][0] == "error" and pages["consistent read of an index"][0][0] == "error"
    assert pages["index, start key of the table only"][0][0] == "crash"


def test_a_page_after_a_write_sees_it(client: Any) -> None:
    """The order kept from one page to the next is dropped when the partition changes."""
    kwargs = _query("pk = :p AND begins_with(sk, :r)", {**P0, ":r": {"S": "R#"}}, Limit=50)
    moto_speedups.install(check=True)
    try:
        first = _answer(client, kwargs)
        after = first["LastEvaluatedKey"]["sk"]["S"]
        added, removed = {"pk": {"S": "P0"}, "sk": {"S": after + "a"}}, {"pk": {"S": "P0"}, "sk": {"S": "R#0051"}}
        kept = client.get_item(TableName=TABLE, Key=removed)["Item"]
        client.put_item(TableName=TABLE, Item={**added, "new": {"S": "yes"}})
        client.delete_item(TableName=TABLE, Key=removed)
        second = _answer(client, {**kwargs, "ExclusiveStartKey": first["LastEvaluatedKey"]})
    finally:
        client.delete_item(TableName=TABLE, Key=added)
        client.put_item(TableName=TABLE, Item=kept)
        moto_speedups.uninstall()
    assert second["Items"][0]["sk"] == added["sk"] and removed["sk"] not in [i["sk"] for i in second["Items"]]


def _moto_item(rng: random.Random) -> Item:
    attrs = {"pk": {"S": "p"}, "sk": {"S": "s"}, **{f"a{i}": _random_value(rng) for i in range(12)}}
    return Item(DynamoType(attrs["pk"]), DynamoType(attrs["sk"]), attrs)


def test_item_size_is_moto_s() -> None:
    rng = random.Random(11)
    for _ in range(300):
        item = _moto_item(rng)
        assert moto_speedups._item_size(item) == item.size()


def test_item_copy_is_a_deep_copy() -> None:
    """Equal to moto's deep copy, and a snapshot: nothing done in place to the item (moto changes
    lists, maps and sets in place, never a scalar) changes the copy."""
    rng = random.Random(12)
    for _ in range(100):
        item = _moto_item(rng)
        copied = moto_speedups._copy_item(item)
        assert repr(copied) == repr(copy.deepcopy(item)) and copied == item
        assert copied.attrs is not item.attrs and not any(t is copied for t in getattr(Item, "instances_tracked", []))
        for key, value in item.attrs.items():
            if value.type in ("L", "M", "SS", "NS", "BS"):
                assert copied.attrs[key] is not value and copied.attrs[key].value is not value.value
        before = repr(copied)
        for value in item.attrs.values():
            if value.type in ("L", "SS", "NS", "BS"):
                value.value.append(DynamoType({"S": "new"}) if value.type == "L" else "9")
            elif value.type == "M":
                value.value["new"] = DynamoType({"S": "new"})
        item.attrs["added"] = DynamoType({"S": "new"})
        assert repr(copied) == before


FAST = ("partition", "in_flight filter", "in_flight filter, limit 7, backwards", "projection and filter", "count",
        "large items", "no partition", "index", "index, range, backwards", "index, projection of its sort key",
        "keys-only index, filter", "start key between items", "start key of another partition")


@pytest.mark.parametrize("name", FAST)
def test_the_product_s_query_shapes_take_the_fast_path(client: Any, name: str) -> None:
    def moto_s_query(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("moto's own query ran")

    moto_speedups.install()
    original = moto_speedups._ORIGINAL_LOOKUPS["query"]
    moto_speedups._ORIGINAL_LOOKUPS["query"] = moto_s_query
    try:
        pages = _pages(client, QUERIES[name])
    finally:
        moto_speedups._ORIGINAL_LOOKUPS["query"] = original
        moto_speedups.uninstall()
    assert all(isinstance(page, dict) for page in pages)
