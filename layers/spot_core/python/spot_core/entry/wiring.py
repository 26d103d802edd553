"""The dependency root: the one place where clients, adapters and services are put together.

Built once per execution environment from the function's settings (warm invocations
reuse the clients); each handler asks it for its service.
"""

from __future__ import annotations

from functools import cached_property, lru_cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from ..adapters import aws
from ..adapters.autoscaling import AutoScalingGroups
from ..adapters.cloudwatch import CloudWatchMetrics
from ..adapters.dynamodb.approvals import DynamoApprovalTokens
from ..adapters.dynamodb.locks import DynamoInstanceLocks
from ..adapters.dynamodb.migrations import DynamoMigrations, DynamoPlans
from ..adapters.dynamodb.pools import DynamoPoolMemory
from ..adapters.dynamodb.registry import DynamoManagedRegistry
from ..adapters.dynamodb.replacements import DynamoReplacementClaims
from ..adapters.ec2 import Ec2Fleet
from ..adapters.elbv2 import ElbTargets
from ..adapters.pricing import PRICING_API_REGION, OnDemandPricer
from ..adapters.scheduler import SchedulerSchedules
from ..adapters.sns import SnsNotifier
from ..adapters.spot_prices import CachedSpotPrices, Ec2SpotPrices
from ..adapters.sqs import SqsQueues
from ..adapters.ssm import SsmProbes
from ..adapters.stepfunctions import SfnExecutions
from ..adapters.webhooks import SecretWebhooks
from ..domain.clock import SystemClock
from ..domain.errors import ConfigurationError
from ..services.analyze import Analyze
from ..services.approval import Approval
from ..services.end_execution import EndExecution
from ..services.finalize import Finalize
from ..services.interruption_hooks import HookRunner
from ..services.interruptions import HOLDER_SECONDS, Interruptions, WarmCache
from ..services.migrate_wave import MigrateWave
from ..services.migrations import Migrations
from ..services.quality_gate import QualityGate
from ..services.rehome import Rehomes
from ..services.retention import RetireOriginals
from ..services.return_fallbacks import ReturnFallbacks
from ..services.review import Review
from ..services.rollback import Rollback
from ..services.sweeper import Sweeper
from ..services.windows import Windows
from .settings import REHOME_STATE_MACHINE_ARN, Settings, load_settings


class Wiring:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.clock = SystemClock()

    # --- AWS clients and adapters ---------------------------------------------------------------
    def client(self, service: str) -> Any:
        return aws.client(service, self.settings.region)

    @cached_property
    def table(self) -> Any:
        return aws.table(self.settings.table_name, self.settings.region)

    @cached_property
    def fleet(self) -> Ec2Fleet:
        return Ec2Fleet(self.client("ec2"), launcher=lambda: aws.client("ec2", self.settings.region, retries=False))

    @cached_property
    def autoscaling(self) -> AutoScalingGroups:
        return AutoScalingGroups(self.client("autoscaling"), self.fleet.ec2)

    @cached_property
    def spot_prices(self) -> Ec2SpotPrices:
        return Ec2SpotPrices(self.fleet.ec2)

    @cached_property
    def load_balancer(self) -> ElbTargets:
        return ElbTargets(self.client("elbv2"))

    @cached_property
    def metrics(self) -> CloudWatchMetrics:
        return CloudWatchMetrics(self.client("cloudwatch"))

    @cached_property
    def queues(self) -> SqsQueues:
        return SqsQueues(self.client("sqs"))

    @cached_property
    def notifier(self) -> SnsNotifier:
        return SnsNotifier(self.client("sns"), self.settings.topic_arn)

    @cached_property
    def executions(self) -> SfnExecutions:
        if not self.settings.state_machine_arn:
            raise ConfigurationError("missing environment variable(s): STATE_MACHINE_ARN")
        return SfnExecutions(self.client("stepfunctions"), self.settings.state_machine_arn)

    @cached_property
    def rehome_executions(self) -> SfnExecutions:
        if not self.settings.rehome_state_machine_arn:
            raise ConfigurationError(f"missing environment variable(s): {REHOME_STATE_MACHINE_ARN}")
        return SfnExecutions(self.client("stepfunctions"), self.settings.rehome_state_machine_arn)

    def on_demand_prices(self) -> OnDemandPricer:
        """A pricer per analysis: its memo and its 'the API failed' flag last one invocation."""
        source = self.settings.pricing_source
        client = aws.client("pricing", PRICING_API_REGION) if source == "api" else None
        return OnDemandPricer(self.settings.region, client, source=source)

    # --- repositories ---------------------------------------------------------------------------
    @cached_property
    def migrations(self) -> DynamoMigrations:
        return DynamoMigrations(self.table)

    @cached_property
    def plans(self) -> DynamoPlans:
        return DynamoPlans(self.table)

    @cached_property
    def tokens(self) -> DynamoApprovalTokens:
        return DynamoApprovalTokens(self.table)

    @cached_property
    def pool_memory(self) -> DynamoPoolMemory:
        return DynamoPoolMemory(self.table)

    @cached_property
    def claims(self) -> DynamoReplacementClaims:
        return DynamoReplacementClaims(self.table)

    @cached_property
    def registry(self) -> DynamoManagedRegistry:
        return DynamoManagedRegistry(self.table)

    @cached_property
    def locks(self) -> DynamoInstanceLocks:
        return DynamoInstanceLocks(self.table)

    # --- services -------------------------------------------------------------------------------
    def analyze(self) -> Analyze:
        return Analyze(self.fleet, self.load_balancer, self.metrics, self.on_demand_prices(), self.spot_prices,
                       self.migrations, self.plans, self.pool_memory, self.locks, self.clock, self.autoscaling)

    @cached_property
    def review(self) -> Review:
        return Review(self.migrations, self.plans, self.pool_memory, self.metrics, self.load_balancer, self.clock)

    @cached_property
    def approval(self) -> Approval:
        return Approval(self.migrations, self.tokens, self.notifier, self.clock)

    @cached_property
    def quality_gate(self) -> QualityGate:
        return QualityGate(self.metrics, self.fleet, self.load_balancer, self.migrations, self.plans, self.clock,
                           SsmProbes(self.client("ssm")))

    @cached_property
    def migrate_wave(self) -> MigrateWave:
        return MigrateWave(self.fleet, self.load_balancer, self.migrations, self.plans, self.registry, self.locks,
                           self.clock, SsmProbes(self.client("ssm")), self.autoscaling)

    @cached_property
    def finalize(self) -> Finalize:
        return Finalize(self.migrations, self.plans, self.notifier, self.spot_prices, self.locks, self.clock,
                        self.autoscaling, cooldown_seconds=self.settings.rollback_cooldown_seconds, fleet=self.fleet)

    @cached_property
    def end_execution(self) -> EndExecution:
        return EndExecution(self.migrations, self.finalize)

    @cached_property
    def rollback(self) -> Rollback:
        return Rollback(self.fleet, self.load_balancer, self.migrations, self.plans, self.registry, self.finalize,
                        self.clock, self.autoscaling)

    def interruptions(self, context: LambdaContext | None) -> Interruptions:
        """A service per invocation (it holds what it claims until the invocation's deadline),
        with what the warm environment keeps across invocations (prices, subnets, recent pools)."""
        remaining = context.get_remaining_time_in_millis() / 1000 if context is not None else HOLDER_SECONDS
        return Interruptions(
            self.fleet, self.load_balancer, self._interruption_prices, self.claims, self.pool_memory, self.registry,
            self.plans, self.notifier, self.clock, self.rehome_executions,
            default_policy=self.settings.rebalance_policy, prewarm_seconds=self.settings.prewarm_seconds,
            holder_seconds=remaining, warm=self._interruption_warm,
            hook_runner=HookRunner(self._checkpoints, self._webhooks, self.load_balancer, self.clock,
                                   timeout_seconds=self.settings.hook_timeout_seconds),
        )

    @cached_property
    def return_fallbacks(self) -> ReturnFallbacks:
        return ReturnFallbacks(
            self.fleet, self.load_balancer, self.spot_prices, self.claims, self.pool_memory, self.registry, self.plans,
            self.locks, self.notifier, self.clock, enabled=self.settings.fallback_return == "on",
            min_age_seconds=self.settings.fallback_return_min_age_seconds)

    @cached_property
    def _checkpoints(self) -> SsmProbes:
        return SsmProbes(self.client("ssm"))

    @cached_property
    def _webhooks(self) -> SecretWebhooks:
        """Kept warm across invocations: a storm of warnings reads each webhook's secret once a minute."""
        return SecretWebhooks(self.client("secretsmanager"), self._checkpoints.ssm)

    @cached_property
    def _interruption_prices(self) -> CachedSpotPrices:
        """Kept warm across invocations: a storm of warnings reads the prices once."""
        return CachedSpotPrices(self.spot_prices)

    @cached_property
    def _interruption_warm(self) -> WarmCache:
        """Kept warm across invocations for a minute: the VPC's subnets, the recently interrupted pools."""
        return WarmCache()

    @cached_property
    def rehomes(self) -> Rehomes:
        return Rehomes(self.fleet, self.load_balancer, self.spot_prices, self.pool_memory, self.registry,
                       self.migrations, self.plans, self.notifier, SsmProbes(self.client("ssm")), self.clock)

    @cached_property
    def sweeper(self) -> Sweeper:
        return Sweeper(self.fleet, self.load_balancer, self.claims, self.registry, self.notifier, self.clock,
                       mode=self.settings.sweeper_mode, grace_seconds=self.settings.sweeper_grace_seconds)

    @cached_property
    def retention(self) -> RetireOriginals:
        return RetireOriginals(self.fleet, self.migrations, self.plans, self.notifier, self.clock)

    @cached_property
    def operator(self) -> Migrations:
        """The migrations service of the API (and spotctl)."""
        return Migrations(self.executions, self.migrations, self.plans, self.tokens, self.clock)

    @cached_property
    def windows(self) -> Windows:
        group, role = self.settings.schedule_group, self.settings.scheduler_role_arn
        if not group or not role:
            raise ConfigurationError("missing environment variable(s): SCHEDULE_GROUP, SCHEDULER_ROLE_ARN")
        return Windows(self.operator, self.migrations, self.plans,
                       SchedulerSchedules(self.client("scheduler"), group, role), self.clock)


@lru_cache(maxsize=4)
def _wiring(settings: Settings) -> Wiring:
    return Wiring(settings)


def wiring() -> Wiring:
    return _wiring(load_settings())


def reset() -> None:
    """Forget cached clients (a new execution environment)."""
    _wiring.cache_clear()
