"""Function configuration from environment variables: the one place the settings and their
defaults are written. The CDK stack and the embedded runtime take the defaults from here.

A missing variable is an error at first use (ConfigurationError naming it), never an
empty string that fails later in a confusing way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..adapters.pricing import PricingSource
from ..domain.errors import ConfigurationError
from ..domain.fallbacks import DEFAULT_MIN_AGE_SECONDS, FallbackReturn
from ..domain.hooks import DEFAULT_TIMEOUT_SECONDS, MAX_TIMEOUT, MIN_TIMEOUT
from ..domain.interruptions import RebalancePolicy
from ..domain.locks import DEFAULT_ROLLBACK_COOLDOWN_SECONDS
from ..domain.orphans import SweeperMode

REQUIRED = ("TABLE_NAME", "TOPIC_ARN")  # every function gets these: resources the stack creates
# Set on the replacement function by the stack's interruption construct (the queue is created after the functions).
DEAD_LETTER_QUEUE_URL = "DEAD_LETTER_QUEUE_URL"
# Set on the replacement function: the state machine that moves an interrupted stateful instance's disks on.
REHOME_STATE_MACHINE_ARN = "REHOME_STATE_MACHINE_ARN"
# Set on the windows function: where its schedules go, and the role Scheduler invokes it with.
SCHEDULE_GROUP, SCHEDULER_ROLE_ARN = "SCHEDULE_GROUP", "SCHEDULER_ROLE_ARN"
DEFAULT_REGION = "us-east-1"


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    table_name: str
    topic_arn: str
    region: str = DEFAULT_REGION
    state_machine_arn: str | None = None  # the migrations API starts executions of it
    # the replacement function keeps the EC2 events it failed on for good there, with the reason
    dead_letter_queue_url: str | None = None
    rehome_state_machine_arn: str | None = None  # the replacement function starts executions of it
    schedule_group: str | None = None  # the on-demand windows' EventBridge Scheduler schedules live there
    scheduler_role_arn: str | None = None  # the role Scheduler invokes the windows function with
    # Tunable per deployment (CDK context of the same name in lower case, e.g. -c sweeper_mode=terminate):
    pricing_source: PricingSource = "api"
    rebalance_policy: RebalancePolicy = "prewarm"
    prewarm_seconds: int = 900
    sweeper_mode: SweeperMode = "report"
    sweeper_grace_seconds: int = 600
    rollback_cooldown_seconds: int = Field(default=DEFAULT_ROLLBACK_COOLDOWN_SECONDS, ge=0)
    # how long an interruption checkpoint may run when its hooks say not (never past the reclaim)
    hook_timeout_seconds: int = Field(default=DEFAULT_TIMEOUT_SECONDS, ge=MIN_TIMEOUT, le=MAX_TIMEOUT)
    # the scheduled job returning on-demand fallbacks to Spot, and how long a fallback runs before it may
    fallback_return: FallbackReturn = "on"
    fallback_return_min_age_seconds: int = Field(default=DEFAULT_MIN_AGE_SECONDS, ge=0)


# Resources some functions need (setting -> its environment variable), set by the stack.
RESOURCES = {"state_machine_arn": "STATE_MACHINE_ARN", "dead_letter_queue_url": DEAD_LETTER_QUEUE_URL,
             "rehome_state_machine_arn": REHOME_STATE_MACHINE_ARN, "schedule_group": SCHEDULE_GROUP,
             "scheduler_role_arn": SCHEDULER_ROLE_ARN}
TUNABLE = ("pricing_source", "rebalance_policy", "prewarm_seconds", "sweeper_mode", "sweeper_grace_seconds",
           "rollback_cooldown_seconds", "hook_timeout_seconds", "fallback_return", "fallback_return_min_age_seconds")


def variable(field: str) -> str:
    """The environment variable of a setting: ``sweeper_mode`` -> ``SWEEPER_MODE``."""
    return field.upper()


def tunable_defaults() -> dict[str, str]:
    """Environment variable -> default, for every tunable setting (what CDK and the embedded runtime set)."""
    return {variable(name): str(Settings.model_fields[name].default) for name in TUNABLE}


def _region(env: Mapping[str, str]) -> str:
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    missing = [name for name in REQUIRED if not env.get(name)]
    if missing:
        raise ConfigurationError(f"missing environment variable(s): {', '.join(missing)}")
    tuned = {name: env[variable(name)] for name in TUNABLE if env.get(variable(name))}
    resources = {name: env.get(variable) or None for name, variable in RESOURCES.items()}
    try:
        return Settings(table_name=env["TABLE_NAME"], topic_arn=env["TOPIC_ARN"], region=_region(env),
                        **resources, **tuned)
    except ValidationError as exc:
        raise ConfigurationError(str(exc)) from exc
