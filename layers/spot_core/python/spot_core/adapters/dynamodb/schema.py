"""The table's key schema, as plain data: the CDK storage construct and the embedded
runtime both create the table from it, and the repositories write these keys.

Items, by partition key (pk) and sort key (sk):

    MIGRATION#<id>    META                  the migration item (also in the by_status index)
                      INSTANCE#<instance>   one plan record per instance (by_status index under
                                            UNFINISHED#<migration>#<wave> while the wave engine has work on it)
                      VERDICT#<agent>       one agent verdict
                      APPROVAL_TOKEN        the task token, while an approval is pending
    INSTANCE#<id>     REPLACEMENT           the one replacement of an interrupted instance (by_status index);
                                            before any, the instance's launch profile (status unclaimed)
                      LOCK                  the migration holding the instance, or its cooldown after a
                                            rollback (by_status index under LOCK#<migration> while held)
    POOLS             <type>#<az>#<when>#<instance>   a Spot interruption, remembered for a week
    MANAGED#<id>      META                  an instance the product launched (the sweeper's registry)
    EVENTS            <hash of the event id>   an EC2 event being or already handled (Powertools Idempotency)
"""

from __future__ import annotations

PARTITION_KEY = "pk"
SORT_KEY = "sk"
STATUS_INDEX = "by_status"
INDEX_PARTITION_KEY = "gsi1pk"
INDEX_SORT_KEY = "gsi1sk"
TTL_ATTRIBUTE = "expires_at"  # epoch seconds; DynamoDB deletes the item some time after


def key_schema() -> dict[str, object]:
    """CreateTable arguments for the keys, the index and on-demand billing (the API's shapes)."""
    return {
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": "S"}
                                 for n in (PARTITION_KEY, SORT_KEY, INDEX_PARTITION_KEY, INDEX_SORT_KEY)],
        "KeySchema": [{"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
                      {"AttributeName": SORT_KEY, "KeyType": "RANGE"}],
        "GlobalSecondaryIndexes": [{
            "IndexName": STATUS_INDEX, "Projection": {"ProjectionType": "ALL"},
            "KeySchema": [{"AttributeName": INDEX_PARTITION_KEY, "KeyType": "HASH"},
                          {"AttributeName": INDEX_SORT_KEY, "KeyType": "RANGE"}],
        }],
        "BillingMode": "PAY_PER_REQUEST",
    }


def migration_pk(migration_id: str) -> str:
    return f"MIGRATION#{migration_id}"


def instance_pk(instance_id: str) -> str:
    return f"INSTANCE#{instance_id}"


def claim_key(instance_id: str) -> dict[str, str]:
    """The key of an instance's replacement claim (and, before it is claimed, of its launch profile)."""
    return {PARTITION_KEY: instance_pk(instance_id), SORT_KEY: REPLACEMENT}


def managed_pk(instance_id: str) -> str:
    return f"MANAGED#{instance_id}"


META = "META"
RECORD_PREFIX = "INSTANCE#"
VERDICT_PREFIX = "VERDICT#"
GROUP_PREFIX = "GROUP#"  # an Auto Scaling group of the plan
APPROVAL_TOKEN = "APPROVAL_TOKEN"
REPLACEMENT = "REPLACEMENT"
POOLS = "POOLS"
EVENTS = "EVENTS"
MIGRATIONS_INDEX_PK = "MIGRATION"  # gsi1pk of migration items
REPLACEMENTS_INDEX_PK = "REPLACEMENT"  # gsi1pk of replacement items
LOCK = "LOCK"


def unfinished_index_pk(migration_id: str, wave: int) -> str:
    """gsi1pk of a migration's records that are still unfinished in `wave`."""
    return f"UNFINISHED#{migration_id}#{wave}"


def locks_index_pk(migration_id: str) -> str:
    """gsi1pk of the locks a migration holds."""
    return f"LOCK#{migration_id}"
