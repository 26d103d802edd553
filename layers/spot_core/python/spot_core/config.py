"""Function configuration from environment variables.

A missing variable is an error at first use (ConfigurationError naming it), never an
empty string that fails later in a confusing way.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigurationError


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    table_name: str
    topic_arn: str
    pricing_source: Literal["api", "catalog"] = "api"
    region: str = "us-east-1"
    rebalance_policy: Literal["ignore", "prewarm", "replace"] = "prewarm"
    prewarm_seconds: int = 900
    sweeper_mode: Literal["report", "terminate"] = "report"
    sweeper_grace_seconds: int = 600
    state_machine_arn: str | None = None  # the migrations API starts executions of it


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    missing = [name for name in ("TABLE_NAME", "TOPIC_ARN") if not env.get(name)]
    if missing:
        raise ConfigurationError(f"missing environment variable(s): {', '.join(missing)}")
    try:
        return Settings(
            table_name=env["TABLE_NAME"],
            topic_arn=env["TOPIC_ARN"],
            pricing_source=env.get("PRICING_SOURCE", "api"),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            rebalance_policy=env.get("REBALANCE_POLICY", "prewarm"),
            prewarm_seconds=env.get("PREWARM_SECONDS", "900"),
            sweeper_mode=env.get("SWEEPER_MODE", "report"),
            sweeper_grace_seconds=env.get("SWEEPER_GRACE_SECONDS", "600"),
            state_machine_arn=env.get("STATE_MACHINE_ARN") or None,
        )
    except ValidationError as exc:
        raise ConfigurationError(str(exc)) from exc
