"""The clients and stores a handler needs, built once per execution environment (warm
invocations reuse them) from the function's settings."""

from __future__ import annotations

from functools import cached_property, lru_cache
from typing import Any

from . import aws
from .config import Settings, load_settings
from .errors import ConfigurationError
from .migrations import Migrations
from .notify import Notifier
from .pricing import OnDemandPricer
from .store import MigrationStore

PRICING_API_REGION = "us-east-1"  # the Price List Query API lives in us-east-1 (and ap-south-1)


class Deps:
    def __init__(self, settings: Settings):
        self.settings = settings

    @cached_property
    def ec2(self) -> Any:
        return aws.client("ec2", self.settings.region)

    @cached_property
    def elbv2(self) -> Any:
        return aws.client("elbv2", self.settings.region)

    @cached_property
    def cloudwatch(self) -> Any:
        return aws.client("cloudwatch", self.settings.region)

    @cached_property
    def sfn(self) -> Any:
        return aws.client("stepfunctions", self.settings.region)

    @cached_property
    def store(self) -> MigrationStore:
        return MigrationStore(aws.table(self.settings.table_name, self.settings.region))

    @cached_property
    def notifier(self) -> Notifier:
        return Notifier(aws.client("sns", self.settings.region), self.settings.topic_arn)

    @cached_property
    def migrations(self) -> Migrations:
        if not self.settings.state_machine_arn:
            raise ConfigurationError("missing environment variable(s): STATE_MACHINE_ARN")
        return Migrations(sfn=self.sfn, store=self.store, state_machine_arn=self.settings.state_machine_arn)

    def pricer(self) -> OnDemandPricer:
        client = aws.client("pricing", PRICING_API_REGION) if self.settings.pricing_source == "api" else None
        return OnDemandPricer(self.settings.region, client, source=self.settings.pricing_source)


@lru_cache(maxsize=4)
def _deps(settings: Settings) -> Deps:
    return Deps(settings)


def deps() -> Deps:
    return _deps(load_settings())


def reset() -> None:
    """Forget cached clients (a new execution environment)."""
    _deps.cache_clear()
