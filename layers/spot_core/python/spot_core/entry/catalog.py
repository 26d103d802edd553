"""The one list of Lambda functions, shared by the CDK stack and the embedded runtime.

Plain data, no CDK import: CDK builds one Function per entry and substitutes
``asl_placeholder`` in the state machine definition with its ARN; the embedded
runtime creates the same functions in moto and runs ``handler`` in-process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .settings import REHOME_STATE_MACHINE_ARN, REQUIRED, SCHEDULE_GROUP, SCHEDULER_ROLE_ARN

# Environment every function gets (values are resources the stack creates).
COMMON_ENVIRONMENT = REQUIRED
SERVICE_NAME = "spot-migration"  # POWERTOOLS_SERVICE_NAME of every function
METRICS_NAMESPACE = "SpotMigration"  # POWERTOOLS_METRICS_NAMESPACE of every function
# What a function needs that launches, swaps and retires instances (waves, rollback, interruptions)
SWAPS_INSTANCES = ("table:write", "ec2:read", "ec2:migrate", "ec2:terminate-managed", "elb:read", "elb:write")
# The state machines (statemachines/<name>.asl.json), and the variable that gives a function one's ARN.
MIGRATION_MACHINE, REHOME_MACHINE = "spot_migration", "stateful_rehome"
MACHINE_ARN_VARIABLES = {MIGRATION_MACHINE: "STATE_MACHINE_ARN", REHOME_MACHINE: REHOME_STATE_MACHINE_ARN}


@dataclass(frozen=True)
class FunctionSpec:
    name: str  # folder under functions/ and logical id stem
    description: str
    asl_placeholder: str | None = None  # ${...} name in statemachines/<state_machine>.asl.json
    timeout_seconds: int = 60
    memory_mb: int = 512
    # Extra environment variable names this function needs beyond COMMON_ENVIRONMENT.
    environment: tuple[str, ...] = ()
    # IAM capabilities the stack grants (see infra/ for what each means).
    permissions: tuple[str, ...] = field(default_factory=tuple)
    state_machine: str = MIGRATION_MACHINE  # the one whose ${asl_placeholder} names this function

    @property
    def handler(self) -> str:
        return "app.lambda_handler"

    @property
    def code_dir(self) -> str:
        return f"functions/{self.name}"


FUNCTIONS: tuple[FunctionSpec, ...] = (
    FunctionSpec(
        "analyze",
        "Selects opted-in instances, prices them, classifies workloads and writes the plan",
        "AnalyzeFunctionArn",
        timeout_seconds=900,
        memory_mb=1769,
        environment=("PRICING_SOURCE",),
        permissions=("ec2:read", "cloudwatch:read", "pricing:read", "elb:read", "table:write", "autoscaling:read"),
    ),
    FunctionSpec(
        "review_performance",
        "Performance agent: CPU headroom, burstable types, latency sensitivity",
        "ReviewPerformanceFunctionArn",
        timeout_seconds=300,
        permissions=("table:write",),  # reads the plan, writes its verdict
    ),
    FunctionSpec(
        "review_capacity",
        "Capacity agent: pool diversity, interruption history, AZ spread",
        "ReviewCapacityFunctionArn",
        timeout_seconds=300,
        permissions=("table:write", "ec2:read"),
    ),
    FunctionSpec(
        "review_application",
        "Application agent: statefulness, load-balancer membership, quality baseline",
        "ReviewApplicationFunctionArn",
        timeout_seconds=300,
        permissions=("table:write", "cloudwatch:read", "elb:read"),
    ),
    FunctionSpec(
        "consolidate_reviews",
        "Records the agents' verdicts, applies exclusions and assigns waves",
        "ConsolidateReviewsFunctionArn",
        timeout_seconds=300,
        permissions=("table:write",),
    ),
    FunctionSpec(
        "request_approval",
        "Stores the task token server-side and notifies the approvers",
        "RequestApprovalFunctionArn",
        permissions=("table:write", "sns:publish"),
    ),
    FunctionSpec(
        "capture_baseline",
        "Captures the latency and error-rate baseline before any change",
        "CaptureBaselineFunctionArn",
        permissions=("table:write", "cloudwatch:read", "elb:read"),
    ),
    FunctionSpec(
        "migrate_wave",
        "Replaces the wave's on-demand instances with Spot, make-before-break",
        "MigrateWaveFunctionArn",
        timeout_seconds=900,
        memory_mb=1024,
        permissions=(*SWAPS_INSTANCES, "ec2:carry", "iam:pass", "ssm:probe", "autoscaling:read",
                     "autoscaling:migrate"),
    ),
    FunctionSpec(
        "quality_gate",
        "Compares the bake window's quality with the baseline, checks alarms and runs the health probes again",
        "QualityGateFunctionArn",
        permissions=("table:write", "cloudwatch:read", "ec2:read", "elb:read", "ssm:probe"),
    ),
    FunctionSpec(
        "rollback",
        "Returns every migrated instance to on-demand and terminates the Spot replacements",
        "RollbackFunctionArn",
        timeout_seconds=900,
        memory_mb=1024,
        environment=("ROLLBACK_COOLDOWN_SECONDS",),
        permissions=(*SWAPS_INSTANCES, "ec2:carry", "sns:publish", "iam:pass", "autoscaling:read",
                     "autoscaling:migrate"),
    ),
    FunctionSpec(
        "replace_interrupted",
        "Replaces managed Spot instances on interruption warnings, rebalance recommendations and reclaims "
        "(batches from the interruption queue)",
        None,
        timeout_seconds=90,
        memory_mb=512,
        # stateful instances' disks move on in the re-home state machine, which it starts
        environment=("REBALANCE_POLICY", "PREWARM_SECONDS", "HOOK_TIMEOUT_SECONDS", "DEAD_LETTER_QUEUE_URL",
                     REHOME_STATE_MACHINE_ARN),
        # interruption hooks: checkpoints by SSM Run Command, webhook URLs read from their secrets
        permissions=(*SWAPS_INSTANCES, "sns:publish", "iam:pass", "workflow:rehome", "ssm:checkpoint",
                     "secrets:webhook"),
    ),
    FunctionSpec(
        "rehome_stateful",
        "Moves the disks of a stateful Spot instance EC2 took back to a new instance in the same AZ "
        "(one pass per invocation of the re-home state machine)",
        "RehomeStatefulFunctionArn",
        timeout_seconds=120,
        memory_mb=512,
        permissions=(*SWAPS_INSTANCES, "ec2:carry", "iam:pass", "ssm:probe", "sns:publish"),
        state_machine=REHOME_MACHINE,
    ),
    FunctionSpec(
        "sweep_orphans",
        "Finds managed instances nothing accounts for; reports or terminates them; retires stopped originals",
        None,
        timeout_seconds=300,
        environment=("SWEEPER_MODE", "SWEEPER_GRACE_SECONDS"),
        permissions=("table:write", "ec2:read", "ec2:terminate-managed", "ec2:retire-originals", "elb:read",
                     "elb:write", "sns:publish"),
    ),
    FunctionSpec(
        "return_fallbacks",
        "Returns the on-demand fallbacks of interruptions to Spot once a healthy pool has capacity again, "
        "make-before-break (scheduled)",
        None,  # not a workflow task: an EventBridge schedule invokes it
        timeout_seconds=900,  # boot, health and drain within one run; what is left, the next run resumes
        environment=("FALLBACK_RETURN", "FALLBACK_RETURN_MIN_AGE_SECONDS"),
        permissions=(*SWAPS_INSTANCES, "sns:publish", "iam:pass"),
    ),
    FunctionSpec(
        "api",
        "The migrations API behind API Gateway: start, list, inspect, plan pages, approve and reject",
        None,  # not a workflow task: it drives the workflow (hence STATE_MACHINE_ARN)
        timeout_seconds=29,  # API Gateway's integration timeout
        memory_mb=1024,
        environment=("STATE_MACHINE_ARN",),
        # read/write the migration items and take the approval token; start, read and complete executions
        permissions=("table:write", "workflow:start", "workflow:read", "workflow:decide"),
    ),
    FunctionSpec(
        "end_execution",
        "Ends a migration whose execution stopped, failed or timed out before its own last step: terminal "
        "status, instance locks released, notification",
        None,  # not a workflow task: EventBridge delivers the execution's status change
        timeout_seconds=120,
        environment=("ROLLBACK_COOLDOWN_SECONDS",),
        permissions=("table:write", "sns:publish"),
    ),
    FunctionSpec(
        "on_demand_windows",
        "Schedules a completed migration's on-demand windows; at each window's start reverts its instances to "
        "on-demand, at its end returns them to Spot (EventBridge Scheduler)",
        None,  # not a workflow task: a migration's success (EventBridge) and its schedules invoke it
        timeout_seconds=60,
        environment=("STATE_MACHINE_ARN", SCHEDULE_GROUP, SCHEDULER_ROLE_ARN),
        permissions=("table:write", "workflow:start", "workflow:read", "scheduler:windows"),
    ),
    FunctionSpec(
        "finalize",
        "Records the outcome and realised savings, notifies, emits metrics",
        "FinalizeFunctionArn",
        timeout_seconds=300,
        environment=("ROLLBACK_COOLDOWN_SECONDS",),
        # groups as they run now; a completed revert terminates the Spot instances it took over from
        permissions=("table:write", "sns:publish", "ec2:read", "autoscaling:read", "ec2:terminate-managed"),
    ),
)


def tasks_of(state_machine: str) -> tuple[FunctionSpec, ...]:
    """The functions a state machine's definition names (its ${placeholders})."""
    return tuple(s for s in FUNCTIONS if s.asl_placeholder and s.state_machine == state_machine)


def by_name(name: str) -> FunctionSpec:
    for spec in FUNCTIONS:
        if spec.name == name:
            return spec
    raise KeyError(f"no function named {name!r} in the catalog")
