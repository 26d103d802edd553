"""Per-instance locks: one migration at a time holds an instance, from planning until the
migration ends, and an instance that was rolled back cools down before it is planned again.

A lock is one item per instance, written with a condition (DynamoDB), so two migrations
whose selectors overlap cannot both hold it. Released at every ending (Finalize, and the
execution status rule when an execution ends without it); a holder whose migration has
ended without releasing (a crash between the two) is taken over.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from .clock import iso

DEFAULT_ROLLBACK_COOLDOWN_SECONDS = 24 * 3600


class InstanceLock(BaseModel):
    """The lock item of an instance: who holds it, or until when it cools down after a rollback."""

    instance_id: str
    migration_id: str | None = None  # the holder
    cooldown_until: datetime | None = None
    cooldown_after: str | None = None  # the migration whose rollback started the cooldown

    def refusal(self, migration_id: str, now: datetime) -> tuple[str, str] | None:
        """Why `migration_id` may not take this instance now, as (reason code, detail), or None."""
        if self.migration_id and self.migration_id != migration_id:
            return "held_by_migration", f"held by migration {self.migration_id}, which has not ended"
        if self.cooldown_until and self.cooldown_until > now:
            return ("rollback_cooldown", f"rolled back by migration {self.cooldown_after}; "
                                         f"out of new plans until {iso(self.cooldown_until)}")
        return None
