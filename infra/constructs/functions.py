"""One Lambda function per catalog entry, each with its own (encrypted) log group and least-privilege role."""

from __future__ import annotations

import dataclasses

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra import FUNCTIONS_DIR
from spot_core.domain.errors import ConfigurationError
from spot_core.entry.catalog import (
    COMMON_ENVIRONMENT,
    FUNCTIONS,
    MACHINE_ARN_VARIABLES,
    METRICS_NAMESPACE,
    SERVICE_NAME,
    FunctionSpec,
    tasks_of,
)
from spot_core.entry.settings import (
    DEAD_LETTER_QUEUE_URL,
    SCHEDULE_GROUP,
    SCHEDULER_ROLE_ARN,
    load_settings,
    tunable_defaults,
)

from . import nag
from .layers import ARCHITECTURE, ASSET_EXCLUDES, RUNTIME, Layers
from .logs import LogGroups
from .permissions import GrantContext, grant
from .storage import Storage
from .windows import WindowScheduling

# Optional variables a catalog entry may ask for (FunctionSpec.environment), with their
# defaults (spot_core.entry.settings); each can be overridden by CDK context of the same
# name in lower case (e.g. ``cdk deploy -c sweeper_mode=terminate``).
SETTINGS_DEFAULTS = tunable_defaults()

BASE_FINDINGS = {
    "Resource::*": "X-Ray active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords "
                   "support no resource-level permissions.",
}


# Variables of resources created after the functions, which the construct creating them sets
# (infra/constructs/interruptions.py: the dead-letter queue the replacement function keeps failures in).
SET_LATER = (DEAD_LETTER_QUEUE_URL,)


def drives_workflow(spec: FunctionSpec) -> bool:
    """Functions that start and complete executions (the API, the replacement function) need a
    state machine's ARN, so they are created after the state machines; those in turn need the
    task functions'."""
    return any(variable in spec.environment for variable in MACHINE_ARN_VARIABLES.values())


def logical_stem(name: str) -> str:
    """``review_capacity`` -> ``ReviewCapacity`` (construct ids, hence logical ids)."""
    return "".join(part.capitalize() for part in name.split("_"))


class Functions(Construct):
    """``functions[name]`` for every ``spot_core.entry.catalog.FUNCTIONS`` entry; the entries that
    drive the workflow exist once :meth:`bind_workflow` has been called."""

    def __init__(
        self, scope: Construct, construct_id: str, *,
        storage: Storage, layers: Layers, log_groups: LogGroups,
    ) -> None:
        super().__init__(scope, construct_id)
        self._storage = storage
        self._layers = layers
        self._logs = log_groups
        self.windows = WindowScheduling(self, "Windows")
        self._grants = GrantContext(stack=Stack.of(self), storage=storage, windows=self.windows)
        self.settings = self._settings()
        self.functions: dict[str, lambda_.Function] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}
        for spec in FUNCTIONS:
            if drives_workflow(spec):
                if spec.asl_placeholder:
                    raise ValueError(f"function {spec.name!r} cannot both be a workflow task and drive the workflow")
                continue
            self.functions[spec.name] = self._function(spec)

    def bind_workflow(self, state_machines: dict[str, sfn.StateMachine]) -> None:
        """Create the functions that drive the workflows, now that their state machines exist
        (by catalog name: spot_core.entry.catalog.MACHINE_ARN_VARIABLES)."""
        self._grants = dataclasses.replace(self._grants, state_machines=state_machines)
        environment = {MACHINE_ARN_VARIABLES[name]: machine.state_machine_arn
                       for name, machine in state_machines.items()}
        environment.update({SCHEDULE_GROUP: self.windows.group_name, SCHEDULER_ROLE_ARN: self.windows.role.role_arn})
        for spec in FUNCTIONS:
            if drives_workflow(spec):
                self.functions[spec.name] = self._function(spec, environment)
                if SCHEDULE_GROUP in spec.environment:  # its schedules invoke it
                    self.windows.allow_invoke(self.functions[spec.name])

    def by_placeholder(self, state_machine: str) -> dict[str, lambda_.Function]:
        """ASL placeholder (``AnalyzeFunctionArn``) -> function, for the tasks of `state_machine`."""
        return {spec.asl_placeholder: self.functions[spec.name] for spec in tasks_of(state_machine)
                if spec.asl_placeholder}

    def _settings(self) -> dict[str, str]:
        """SETTINGS_DEFAULTS overridden by context, validated by the functions' own settings model."""
        values = {}
        for name, default in SETTINGS_DEFAULTS.items():
            override = self.node.try_get_context(name.lower())
            values[name] = default if override is None else str(override)
        try:
            load_settings({"TABLE_NAME": "-", "TOPIC_ARN": "-", **values})
        except ConfigurationError as exc:  # fail at synth, not at the first invocation
            raise ValueError(f"invalid function setting in CDK context: {exc}") from exc
        return values

    def _environment(self, spec: FunctionSpec, resources: dict[str, str]) -> dict[str, str]:
        values = {
            "TABLE_NAME": self._storage.table.table_name,
            "TOPIC_ARN": self._storage.topic.topic_arn,
            **self.settings,
            **resources,
        }
        names = [n for n in (*COMMON_ENVIRONMENT, *spec.environment) if n not in SET_LATER]
        missing = [n for n in names if n not in values]
        if missing:
            raise ValueError(f"function {spec.name!r}: no value known for environment variable(s) {missing}")
        env = {name: values[name] for name in names}
        env.update({"POWERTOOLS_SERVICE_NAME": SERVICE_NAME, "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE})
        return env

    def _function(self, spec: FunctionSpec, resources: dict[str, str] | None = None) -> lambda_.Function:
        stem = logical_stem(spec.name)
        log_group = self._logs.log_group(self, f"{stem}Logs")
        role = iam.Role(
            self, f"{stem}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Spot migration: {spec.name} function (no managed policies)",
        )
        log_group.grant_write(role)  # logs:CreateLogStream + logs:PutLogEvents on this log group only
        function = lambda_.Function(
            self, f"{stem}Function",
            description=spec.description,
            code=lambda_.Code.from_asset(str(FUNCTIONS_DIR / spec.name), exclude=ASSET_EXCLUDES),
            handler=spec.handler,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            timeout=Duration.seconds(spec.timeout_seconds),
            memory_size=spec.memory_mb,
            role=role,
            layers=self._layers.all,
            environment=self._environment(spec, resources or {}),
            tracing=lambda_.Tracing.ACTIVE,  # CDK adds xray:PutTraceSegments/PutTelemetryRecords to the role
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
            log_group=log_group,
        )
        findings = [BASE_FINDINGS, *(grant(self._grants, role, p) for p in spec.permissions)]
        nag.acknowledge_iam5(role, nag.merge_findings(*findings))
        nag.acknowledge(
            function, "AwsSolutions-L1",
            f"Pinned to {RUNTIME.name}: the Powertools layer release used (see infra/constructs/layers.py) "
            f"and the tested runtime are {RUNTIME.name}; the runtime moves with them, not on its own.",
        )
        self.log_groups[spec.name] = log_group
        return function
