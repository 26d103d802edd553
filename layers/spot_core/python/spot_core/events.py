"""Input models of the handlers, validated with Powertools Parser before any work."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from aws_lambda_powertools.utilities.parser import parse
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError, field_validator

from .errors import InvalidEvent
from .models import MIGRATION_ID, WaveSpec

M = TypeVar("M", bound=BaseModel)


class MigrationEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    migration_id: str

    @field_validator("migration_id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not MIGRATION_ID.match(value):
            raise ValueError("migration_id must be 1-80 letters, digits, '-' or '_'")
        return value


class AnalyzeEvent(MigrationEvent):
    request: dict[str, Any] | None = None


class ConsolidateEvent(MigrationEvent):
    verdicts: list[dict[str, Any]]


class ApprovalEvent(MigrationEvent):
    task_token: str
    execution_arn: str | None = None  # for the console link in the notification


class WaveEvent(MigrationEvent):
    wave: WaveSpec


class GateEvent(WaveEvent):
    since: AwareDatetime  # when the wave completed: the bake window starts here


class RollbackEvent(MigrationEvent):
    failure: dict[str, Any] | None = None


class FinalizeEvent(MigrationEvent):
    outcome: Literal["completed", "vetoed", "rejected", "approval_timed_out", "nothing_to_migrate", "planned", "rollback_failed"]
    detail: dict[str, Any] | None = None


def parse_event(event: Any, model: type[M]) -> M:
    try:
        return parse(event=event, model=model)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}" for e in exc.errors())
        raise InvalidEvent(f"invalid {model.__name__}: {problems}") from None
    except Exception as exc:  # Powertools wraps model errors in its own exception types
        raise InvalidEvent(f"invalid {model.__name__}: {exc}") from None
