"""The embedded runtime: the whole product in-process on moto.

    with LocalRuntime() as rt:
        rt.fleet.seed_fleet(10)
        result = rt.run_migration({"approval": {"auto_approve": True}})

It creates the same table, topic, functions and state machine as the CDK stack (from the
same catalog and ASL file), runs the ASL in moto's Step Functions interpreter and the
handlers in-process, and simulates what moto cannot: the Spot market, capacity errors,
the service's quality metrics, Lambda faults, and the passing of Wait states
(fast-forwarded: a 900 s bake takes no real time).

`LocalRuntime(timing=TimingModel(...))` (spotctl/local/timing.py, off by default) runs the
same on a virtual clock on which EC2 and ELB keep realistic timings and API limits;
`rt.timing.report()` tells the simulated duration of the last execution.
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws
from moto.awslambda.models import LambdaFunction
from moto.awslambda.responses import LambdaResponse
from moto.events.models import EventPattern
from moto.stepfunctions.parser.api import ExecutionStatus
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution

from spot_core.adapters.dynamodb import schema
from spot_core.domain.plan import InstanceRecord
from spot_core.entry import wiring as handler_wiring
from spot_core.entry.catalog import (
    FUNCTIONS,
    MACHINE_ARN_VARIABLES,
    METRICS_NAMESPACE,
    MIGRATION_MACHINE,
    REHOME_MACHINE,
    SERVICE_NAME,
    tasks_of,
)
from spot_core.entry.event_rules import EXECUTION_STATUS_CHANGE, execution_ended_pattern, execution_succeeded_pattern
from spot_core.entry.settings import SCHEDULE_GROUP, SCHEDULER_ROLE_ARN, load_settings, tunable_defaults
from spot_core.entry.wiring import Wiring
from spot_core.services.migrations import Migrations

from . import dynamodb as local_dynamodb
from .autoscaling import AutoScalingSimulator
from .ec2_events import Ec2Events
from .health import HealthSimulator
from .lambdas import InProcessLambdas, lambda_payload
from .market import SpotMarket
from .scheduler import LocalScheduler
from .timing import TimingModel, TimingSimulator
from .workload import FleetSimulator

REPO = Path(__file__).resolve().parents[2]
ASL_PATH = REPO / "statemachines" / "spot_migration.asl.json"
TABLE_NAME = "spot-migration"
TOPIC_NAME = "spot-migration-notifications"
STATE_MACHINE_NAME = "spot-migration"
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
END_EXECUTION = "spot-migration-end_execution"
WINDOWS = "spot-migration-on_demand_windows"  # schedules a completed migration's windows


@dataclass
class ExecutionResult:
    arn: str
    migration_id: str
    status: str
    error: str | None
    cause: str | None
    output: dict | None


def _checked(response: Any) -> Any:
    """An Invoke request whose payload is checked as Lambda checks it before moto reads it:
    InvalidRequestContentException (400) when it is not JSON, nested too deeply included."""
    body = response.raw_body
    if body:
        lambda_payload(body.encode() if isinstance(body, str) else body)
    return response


class _VirtualTime:
    """Stands in for the `time` module inside moto's retrier: retry backoff advances the
    virtual clock instead of sleeping."""

    def __init__(self, runtime: LocalRuntime):
        self.runtime = runtime

    def sleep(self, seconds: float) -> None:
        self.runtime.advance(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class LocalRuntime(Ec2Events):
    """The product on moto (see the module docstring); EC2's own events come from Ec2Events."""

    def __init__(self, region: str = "us-east-1", seed: int = 7, fast_forward: bool = True,
                 timing: TimingModel | None = None):
        self.region, self.seed = region, seed
        self.fast_forward = fast_forward or timing is not None  # the timing simulator's Waits are virtual
        self.virtual_seconds = 0.0
        self.waits: list[float] = []
        self.market = SpotMarket(region, seed=seed)
        self.health = HealthSimulator.of(  # status checks and probes on this runtime's clock
            self, **({"status_check_seconds": timing.status_check_seconds} if timing is not None else {}))
        self.fleet = FleetSimulator(self.client, region, seed=seed)
        # Opt-in timing simulator (spotctl/local/timing.py): EC2 and ELB on a virtual clock.
        self.timing = TimingSimulator(timing) if timing is not None else None
        if self.timing is not None:
            self.fleet.now = self.timing.fleet_now
        # Auto Scaling groups (spotctl/local/autoscaling.py): mixed instances, instance refresh, Capacity Rebalancing.
        self.autoscaling = AutoScalingSimulator(self)
        self._clients: dict[str, Any] = {}
        self._saved: dict[str, Any] = {}
        self._inbox: list[dict] = []
        self._ending: set[str] = set()  # executions whose status change is being delivered
        self.execution_events: list[dict] = []  # what the execution-status rule delivered, and the answer
        self.scheduler = LocalScheduler(self)  # EventBridge Scheduler: the windows' schedules on its own clock

    # --- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> LocalRuntime:
        self._saved["env"] = dict(os.environ)
        os.environ.update({
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region,
        })
        os.environ.pop("AWS_PROFILE", None)
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()
        handler_wiring.reset()
        self._patch()
        try:
            self._create_resources()
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._unpatch()
        self._mock.stop()
        handler_wiring.reset()
        os.environ.clear()
        os.environ.update(self._saved["env"])

    def _patch(self) -> None:
        self.lambdas = InProcessLambdas(environment={}, specs={f"spot-migration-{s.name}": s for s in FUNCTIONS})
        self.lambdas.install()
        runtime = self
        self._saved["invoke"] = LambdaFunction._invoke_lambda
        self._saved["response_invoke"] = LambdaResponse.invoke
        LambdaResponse.invoke = lambda response: runtime._saved["response_invoke"](_checked(response))
        self._saved["wait"] = WaitFunction._wait_interval
        self._saved["retry_time"] = retrier_decl.time
        self._saved["terminated"] = BaseExecutionWorkerCommunication.terminated
        self._saved["stop"] = Execution.stop
        Execution.stop = lambda execution, stop_date, error, cause: runtime._stop(execution, stop_date, error, cause)
        LambdaFunction._invoke_lambda = lambda fn, event=None: runtime.lambdas.invoke(fn, event)
        BaseExecutionWorkerCommunication.terminated = lambda comm: runtime._terminated(comm)
        if self.fast_forward:
            WaitFunction._wait_interval = lambda wait, env, wait_seconds: runtime._wait(wait_seconds)
            retrier_decl.time = _VirtualTime(self)
        self.market.install()
        if self.timing is not None:
            self.timing.install(self.lambdas)
        self.health.install()
        local_dynamodb.install()  # TransactWriteItems without moto's table copy per item
        self.autoscaling.install()

    def _unpatch(self) -> None:
        self.autoscaling.uninstall()
        self.health.uninstall()  # first: it wraps what the market and the timing simulator patched
        if self.timing is not None:
            self.timing.uninstall()
        self.market.uninstall()
        local_dynamodb.uninstall()
        LambdaFunction._invoke_lambda = self._saved["invoke"]
        LambdaResponse.invoke = self._saved["response_invoke"]
        WaitFunction._wait_interval = self._saved["wait"]
        BaseExecutionWorkerCommunication.terminated = self._saved["terminated"]
        Execution.stop = self._saved["stop"]
        retrier_decl.time = self._saved["retry_time"]
        self.lambdas.uninstall()

    def _terminated(self, comm: Any) -> None:
        """An execution ended: its status, then (as EventBridge would) its status change to the
        rule that ends a migration whose execution did not reach its own last step."""
        arn = comm.execution.exec_arn
        self._ending.add(arn)
        try:
            self._saved["terminated"](comm)
            if self.timing is not None and comm.execution.state_machine_arn == self.state_machine_arn:
                self.timing.end()  # a migration's execution (not a re-home's)
            self._execution_ended(comm.execution)
        finally:
            self._ending.discard(arn)

    def _stop(self, execution: Any, stop_date: Any, error: str | None, cause: str | None) -> None:
        """StopExecution. moto's worker does not notice a stop while a state waits for a task
        token; Step Functions ends the execution at once (a Lambda already running carries on)."""
        self._saved["stop"](execution, stop_date, error, cause)
        deadline = time.monotonic() + 1.0
        while execution.exec_status == ExecutionStatus.RUNNING and time.monotonic() < deadline:
            time.sleep(0.02)
        if execution.exec_status == ExecutionStatus.RUNNING:
            self._ending.add(execution.exec_arn)
            try:
                execution.exec_status, execution.stop_date = ExecutionStatus.ABORTED, stop_date
                execution.error, execution.cause = error, cause
                self._execution_ended(execution)
            finally:
                self._ending.discard(execution.exec_arn)

    def _execution_ended(self, execution: Any) -> None:
        status = str(getattr(execution.exec_status, "value", execution.exec_status))
        event = {
            "version": "0", "id": str(uuid.uuid4()), "detail-type": EXECUTION_STATUS_CHANGE, "source": "aws.states",
            "account": "123456789012", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": self.region, "resources": [execution.exec_arn],
            "detail": {"executionArn": execution.exec_arn, "stateMachineArn": self.state_machine_arn,
                       "name": execution.name, "status": status, "error": execution.error,
                       "cause": execution.cause},
        }
        for function, rule in ((END_EXECUTION, execution_ended_pattern), (WINDOWS, execution_succeeded_pattern)):
            if EventPattern.load(json.dumps(rule(self.state_machine_arn))).matches_event(event):
                self.execution_events.append({"function": function, **self.invoke_async(function, event)})

    def _wait(self, seconds: float) -> None:
        """A fast-forwarded Wait state: the service plays `seconds` of traffic at once."""
        self.advance(seconds)
        self.waits.append(seconds)
        self.fleet.emit_quality(seconds)
        if self.timing is None:
            # Metrics are stamped `now`; the gate's window ends at a later whole second.
            # (The timing simulator stamps them on its clock, to the second.)
            time.sleep(1.0 - (time.time() % 1.0) + 0.01)

    def advance(self, seconds: float) -> None:
        """Fast-forwarded time: a Wait state or a retry's back-off (on the virtual clock in timing mode)."""
        self.virtual_seconds += seconds
        if self.timing is not None:
            self.timing.clock.advance(seconds)

    # --- resources (the same ones the CDK stack creates) ------------------------------------
    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = boto3.client(service, region_name=self.region)
        return self._clients[service]

    def _create_resources(self) -> None:
        ddb = self.client("dynamodb")
        ddb.create_table(TableName=TABLE_NAME, **schema.key_schema())
        ddb.update_time_to_live(TableName=TABLE_NAME,
                                TimeToLiveSpecification={"Enabled": True, "AttributeName": schema.TTL_ATTRIBUTE})
        self.topic_arn = self.client("sns").create_topic(Name=TOPIC_NAME)["TopicArn"]
        self.queue_url = self.client("sqs").create_queue(QueueName="notifications-inbox")["QueueUrl"]
        queue = self.client("sqs").get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        queue_arn = queue["Attributes"]["QueueArn"]
        self.client("sns").subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)
        self.dlq_url = self.client("sqs").create_queue(QueueName="spot-migration-interruptions-dlq")["QueueUrl"]
        self.create_interruption_queue()
        scheduler_role = self.client("iam").create_role(RoleName="spot-migration-scheduler",
                                                        AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        self.lambdas.environment.update({SCHEDULE_GROUP: self.scheduler.create_group(),
                                         SCHEDULER_ROLE_ARN: scheduler_role})

        self.lambdas.environment.update({
            **tunable_defaults(), "TABLE_NAME": TABLE_NAME, "TOPIC_ARN": self.topic_arn,
            "PRICING_SOURCE": "catalog",  # no Price List API offline: the bundled catalog
            "POWERTOOLS_SERVICE_NAME": SERVICE_NAME, "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region,
        })
        role = self.client("iam").create_role(RoleName="spot-migration-local",
                                              AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as z:
            z.writestr("app.py", "# runs in-process; see spotctl/local/lambdas.py\n")
        arns = {}
        for spec in FUNCTIONS:
            fn = self.client("lambda").create_function(
                FunctionName=f"spot-migration-{spec.name}", Runtime="python3.13", Role=role, Handler=spec.handler,
                Code={"ZipFile": code.getvalue()}, Timeout=spec.timeout_seconds, MemorySize=spec.memory_mb,
                Architectures=["arm64"],
                Environment={"Variables": {"TABLE_NAME": TABLE_NAME, "TOPIC_ARN": self.topic_arn}},
            )
            arns[spec.name] = fn["FunctionArn"]
        machines = {name: self._state_machine(name, role, arns) for name in MACHINE_ARN_VARIABLES}
        self.state_machine_arn, self.rehome_state_machine_arn = machines[MIGRATION_MACHINE], machines[REHOME_MACHINE]
        self.lambdas.environment.update({MACHINE_ARN_VARIABLES[name]: arn for name, arn in machines.items()})
        # The runtime's own view of the product's state: the same adapters the handlers use.
        self.wiring = Wiring(load_settings(self.lambdas.environment))
        self.table = self.wiring.table

    def _state_machine(self, name: str, role: str, function_arns: dict[str, str]) -> str:
        """One state machine of the catalog, its ${placeholders} replaced by its task functions' ARNs."""
        definition = (ASL_PATH.parent / f"{name}.asl.json").read_text()
        for spec in tasks_of(name):
            definition = definition.replace(f"${{{spec.asl_placeholder}}}", function_arns[spec.name])
        machine_name = STATE_MACHINE_NAME if name == MIGRATION_MACHINE else f"{STATE_MACHINE_NAME}-{name}"
        return str(self.client("stepfunctions").create_state_machine(
            name=machine_name, definition=definition, roleArn=role)["stateMachineArn"])

    def publish_stack(self, stack_name: str = "SpotMigration") -> dict:
        """A CloudFormation stack with the same outputs as the CDK stack, so spotctl finds the
        embedded runtime's resources exactly as it finds a deployed stack's."""
        outputs = {"StateMachineArn": self.state_machine_arn, "RehomeStateMachineArn": self.rehome_state_machine_arn,
                   "TableName": TABLE_NAME, "TopicArn": self.topic_arn,
                   "InterruptionDeadLetterQueueUrl": self.dlq_url}
        if getattr(self.fleet, "target_group_arn", None):
            # the simulated service, a default for quality gates
            outputs["TargetGroupArn"] = self.fleet.target_group_arn
        template = {"Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
                    "Outputs": {k: {"Value": v} for k, v in outputs.items()}}
        self.client("cloudformation").create_stack(StackName=stack_name, TemplateBody=json.dumps(template))
        return outputs

    # --- running migrations -------------------------------------------------------------------
    def start_migration(self, request: dict | None = None, migration_id: str | None = None) -> str:
        """Start an execution; the migration id is the execution name."""
        name = migration_id or f"mig-{uuid.uuid4().hex[:12]}"
        if self.timing is not None:
            self.timing.begin()
        self.client("stepfunctions").start_execution(stateMachineArn=self.state_machine_arn, name=name,
                                                     input=json.dumps(request or {}))
        return name

    def execution_arn(self, migration_id: str) -> str:
        return self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{migration_id}"

    def wait(self, migration_id: str, timeout: float = 120.0) -> ExecutionResult:
        return self._wait_for(self.execution_arn(migration_id), migration_id, timeout)

    def wait_rehome(self, interrupted: str, timeout: float = 120.0) -> ExecutionResult:
        """The re-home of a stateful Spot instance EC2 took back (started by the replacement
        function, named after the instance), once it has ended; its output says how."""
        arn = self.rehome_state_machine_arn.replace(":stateMachine:", ":execution:") + f":rehome-{interrupted}"
        return self._wait_for(arn, f"rehome-{interrupted}", timeout)

    def _wait_for(self, arn: str, migration_id: str, timeout: float) -> ExecutionResult:
        sfn = self.client("stepfunctions")
        deadline = time.monotonic() + timeout
        while True:
            d = sfn.describe_execution(executionArn=arn)
            if (d["status"] in TERMINAL and arn not in self._ending) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        output = json.loads(d["output"]) if d.get("output") else None
        return ExecutionResult(arn, migration_id, d["status"], d.get("error"), d.get("cause"), output)

    def run_migration(self, request: dict | None = None, migration_id: str | None = None,
                      timeout: float = 120.0) -> ExecutionResult:
        return self.wait(self.start_migration(request, migration_id), timeout)

    def wait_for_status(self, migration_id: str, status: str, timeout: float = 60.0) -> dict:
        """Poll the migration record until it reaches `status` (e.g. awaiting_approval)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                item = self.migration(migration_id)
                if item.get("status") == status:
                    return item
            except Exception:  # noqa: BLE001 - not written yet
                pass
            time.sleep(0.02)
        raise TimeoutError(f"migration {migration_id} did not reach {status}")

    def operator(self) -> Migrations:
        """The operator's service (as the API and spotctl use it) on this runtime."""
        return self.wiring.operator

    def migration(self, migration_id: str) -> dict:
        """The migration item."""
        return self.wiring.migrations.get(migration_id)

    def records(self, migration_id: str) -> list[InstanceRecord]:
        """The plan: one record per instance."""
        return self.wiring.plans.records(migration_id)

    def decide(self, migration_id: str, approved: bool, reason: str | None = None,
               principal: str = "local-operator") -> dict:
        return self.operator().decide(migration_id, approved, principal=principal, reason=reason).model_dump()

    def history(self, migration_id: str) -> list[dict]:
        sfn, events, kwargs = self.client("stepfunctions"), [], {"executionArn": self.execution_arn(migration_id)}
        while True:
            page = sfn.get_execution_history(**kwargs)
            events += page["events"]
            if not page.get("nextToken"):
                return events
            kwargs["nextToken"] = page["nextToken"]

    def notifications(self) -> list[dict]:
        """Every SNS notification delivered so far (subject and message)."""
        sqs = self.client("sqs")
        while True:
            msgs = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                return list(self._inbox)
            for m in msgs:
                body = json.loads(m["Body"])
                self._inbox.append({"subject": body.get("Subject"), "message": body.get("Message")})
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
