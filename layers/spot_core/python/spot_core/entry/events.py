"""Input models of the handlers, validated with Powertools Parser before any work."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.exceptions import InvalidEnvelopeError, InvalidModelTypeError
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..domain.errors import InvalidEvent
from ..domain.interruptions import Notice, NoticeKind
from ..domain.outcomes import Outcome
from ..domain.plan import WaveSpec
from ..domain.request import INSTANCE_ID, MIGRATION_ID, MIGRATION_ID_RULE, describe_errors
from .event_rules import INSTANCE_STATE_CHANGE, INTERRUPTION_WARNING

M = TypeVar("M", bound=BaseModel)


class MigrationEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    migration_id: str

    @field_validator("migration_id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not MIGRATION_ID.match(value):
            raise ValueError(f"migration_id must be {MIGRATION_ID_RULE}")
        return value


class AnalyzeEvent(MigrationEvent):
    request: Any = None  # any JSON value: parse_request says what is wrong with a non-object


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


class RehomeEvent(MigrationEvent):
    """A pass of the re-home state machine: the record of `original_id`, whose stateful Spot
    instance `interrupted` EC2 took back; `error`: the state machine's retries are spent."""

    original_id: str
    interrupted: str
    error: dict[str, Any] | None = None

    @field_validator("original_id", "interrupted")
    @classmethod
    def _instance_id(cls, value: str) -> str:
        if not INSTANCE_ID.match(value):
            raise ValueError("must be an EC2 instance id (i- and 8 or 17 hex digits)")
        return value


class FinalizeEvent(MigrationEvent):
    outcome: Outcome
    detail: dict[str, Any] | None = None


class InstanceDetail(BaseModel):
    instance_id: str = Field(alias="instance-id")
    instance_action: str | None = Field(default=None, alias="instance-action")
    state: str | None = None  # a state change's new state

    @field_validator("instance_id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not INSTANCE_ID.match(value):
            raise ValueError(f"{value!r} is not an EC2 instance id")
        return value


class Ec2InstanceEvent(EventBridgeModel):
    """A Spot interruption warning, a rebalance recommendation or an instance state change (a
    reclaim that may have come without a warning), as EventBridge delivers it."""

    source: Literal["aws.ec2"]
    detail_type: Literal["EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation",
                         "EC2 Instance State-change Notification"] = Field(alias="detail-type")
    detail: InstanceDetail

    @property
    def instance_id(self) -> str:
        return self.detail.instance_id

    @property
    def is_interruption(self) -> bool:
        return self.detail_type == INTERRUPTION_WARNING

    def notice(self) -> Notice:
        kind: NoticeKind = ("interruption" if self.is_interruption
                            else "state-change" if self.detail_type == INSTANCE_STATE_CHANGE else "rebalance")
        return Notice(event_id=self.id, instance_id=self.instance_id, time=self.time, kind=kind,
                      state=self.detail.state)


def parse_event(event: Any, model: type[M]) -> M:
    try:
        return parse(event=event, model=model)
    except ValidationError as exc:
        raise InvalidEvent(f"invalid {model.__name__}: {describe_errors(exc, 'event')}") from None
    except (InvalidModelTypeError, InvalidEnvelopeError, TypeError, ValueError) as exc:  # not even an object
        raise InvalidEvent(f"invalid {model.__name__}: {exc}") from None


class ExecutionDetail(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str  # the execution's name: the migration id
    status: Literal["FAILED", "TIMED_OUT", "ABORTED"]
    cause: str | None = None
    error: str | None = None


class ExecutionEndedEvent(EventBridgeModel):
    """A migration's execution that ended without its own last step (Step Functions' status change)."""

    source: Literal["aws.states"]
    detail: ExecutionDetail

    @property
    def migration_id(self) -> str:
        return self.detail.name


class SucceededDetail(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str  # the execution's name: the migration id
    status: Literal["SUCCEEDED"]


class ExecutionSucceededEvent(EventBridgeModel):
    """A migration's execution that succeeded (Step Functions' status change): its windows get scheduled."""

    source: Literal["aws.states"]
    detail: SucceededDetail

    @property
    def migration_id(self) -> str:
        return self.detail.name


class WindowEvent(MigrationEvent):
    """What a window's EventBridge Scheduler schedule sends when it fires."""

    window: str
    action: Literal["open", "close"]
    scheduled_time: str = Field(max_length=40)
