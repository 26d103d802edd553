"""Stores an agent's verdict in full and returns the payload-sized version."""

from .models import AgentVerdict
from .store import MigrationStore

MAX_IDS_IN_PAYLOAD = 100


def record_verdict(store: MigrationStore, migration_id: str, verdict: AgentVerdict) -> dict:
    store.put_verdict(migration_id, verdict)
    payload = verdict.model_dump()
    if len(verdict.excluded_instance_ids) > MAX_IDS_IN_PAYLOAD:
        payload["excluded_instance_ids"] = verdict.excluded_instance_ids[:MAX_IDS_IN_PAYLOAD]
        payload["excluded_ids_truncated"] = True
    return payload
