"""The SpotMigration stack: storage, functions, the workflow that chains them, and the
migrations API in front of it.

Environment-agnostic: no account/region, no context lookups, no AWS calls at synth.
Context (``cdk.json`` or ``cdk -c key=value``):

* ``replacer_concurrency`` - reserved concurrency of the replacement function: an integer
  (``-c`` passes a string of digits), 20 by default, 0 for none.
* ``notification_email`` - optional address subscribed to the topic (confirm the email).
* ``log_retention`` - a ``aws_logs.RetentionDays`` name, ``ONE_MONTH`` by default.
* ``api_account_logging_role`` - ``false`` when the account's API Gateway CloudWatch role is
  managed elsewhere (default ``true``: the stack sets it; see infra/constructs/api.py).
* ``pricing_source``, ``rebalance_policy``, ``prewarm_seconds``, ``sweeper_mode``,
  ``sweeper_grace_seconds``, ``fallback_return``, ``fallback_return_min_age_seconds`` - function
  settings (see ``infra/constructs/functions.py``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from aws_cdk import App, CfnOutput, Stack
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import OPENAPI_FILE, REPO_ROOT, STATE_MACHINE_FILE, machine_file
from spot_core.entry.catalog import MIGRATION_MACHINE, REHOME_MACHINE

from .constructs import (
    ExecutionEndHandling,
    Functions,
    InterruptionHandling,
    Layers,
    LogGroups,
    MigrationsApi,
    Operations,
    Storage,
    Workflow,
)
from .constructs.nag import enable_checks

STACK_NAME = "SpotMigration"
# What the CDK CLI sets by default, so `python3 app.py` output carries the construct
# paths and local asset folders that `sam local invoke` reads (CLI flags still win).
SYNTH_DEFAULTS = {"aws:cdk:enable-path-metadata": True, "aws:cdk:enable-asset-metadata": True}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DIGITS = re.compile(r"^[0-9]+$")


class SpotMigrationStack(Stack):
    def __init__(self, scope: Construct, construct_id: str = STACK_NAME, **kwargs: Any) -> None:
        kwargs.setdefault("description", "Spot migration: moves opted-in EC2 fleets from on-demand to Spot, safely")
        super().__init__(scope, construct_id, **kwargs)

        replacer_concurrency = self._count("replacer_concurrency", default=20)  # bad context fails before any work
        self.log_groups = LogGroups(self, "Logs", retention=self._log_retention())
        self.storage = Storage(self, "Storage", notification_email=self._notification_email())
        self.layers = Layers(self, "Layers")
        self.functions = Functions(self, "Functions", storage=self.storage, layers=self.layers,
                                   log_groups=self.log_groups)
        self.workflow = Workflow(self, "Workflow", definition_file=STATE_MACHINE_FILE,
                                 tasks=self.functions.by_placeholder(MIGRATION_MACHINE), log_groups=self.log_groups)
        self.rehome = Workflow(self, "Rehome", definition_file=machine_file(REHOME_MACHINE),
                               tasks=self.functions.by_placeholder(REHOME_MACHINE), log_groups=self.log_groups)
        # The API function starts migrations, the replacement function re-homes: they are created
        # after the state machines.
        self.functions.bind_workflow({MIGRATION_MACHINE: self.workflow.state_machine,
                                      REHOME_MACHINE: self.rehome.state_machine})
        self.api = MigrationsApi(
            self, "MigrationsApi", handler=self.functions.functions["api"], openapi_file=OPENAPI_FILE,
            log_groups=self.log_groups, account_logging_role=self._flag("api_account_logging_role", default=True),
        )

        self.interruptions = InterruptionHandling(
            self, "Interruptions",
            replacer=self.functions.functions["replace_interrupted"], sweeper=self.functions.functions["sweep_orphans"],
            replacer_concurrency=replacer_concurrency,
            fallback_returner=self.functions.functions["return_fallbacks"],
        )
        self.execution_end = ExecutionEndHandling(
            self, "ExecutionEnd", handler=self.functions.functions["end_execution"],
            state_machine=self.workflow.state_machine, dead_letters=self.interruptions.dead_letters,
            windows_handler=self.functions.functions["on_demand_windows"],
        )
        self.operations = Operations(
            self, "Operations", storage=self.storage, dead_letters=self.interruptions.dead_letters,
            functions=self.functions.functions, state_machine=self.workflow.state_machine,
        )

        CfnOutput(self, "StateMachineArn", value=self.workflow.state_machine.state_machine_arn)
        CfnOutput(self, "RehomeStateMachineArn", value=self.rehome.state_machine.state_machine_arn,
                  description="Moves interrupted stateful Spot instances' disks to a new instance")
        CfnOutput(self, "TableName", value=self.storage.table.table_name)
        CfnOutput(self, "TopicArn", value=self.storage.topic.topic_arn)
        CfnOutput(self, "InterruptionDeadLetterQueueUrl", value=self.interruptions.dead_letters.queue_url)
        CfnOutput(self, "ApiUrl", value=self.api.api.url,
                  description="The migrations API (IAM/SigV4); Swagger UI at <ApiUrl>swagger")

    def _flag(self, name: str, *, default: bool) -> bool:
        value = self.node.try_get_context(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise ValueError(f"context {name}={value!r} is not true or false")

    def _count(self, name: str, *, default: int) -> int:
        """A non-negative integer: from cdk.json as a number, from ``-c`` as a string of digits."""
        value = self.node.try_get_context(name)
        if value is None:
            return default
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and DIGITS.match(value.strip()):
            return int(value.strip())
        raise ValueError(f"context {name}={value!r} is not a non-negative integer")

    def _notification_email(self) -> str | None:
        email = self.node.try_get_context("notification_email")
        if email in (None, ""):
            return None
        if not isinstance(email, str) or not EMAIL.match(email):
            raise ValueError(f"context notification_email is not an email address: {email!r}")
        return email

    def _log_retention(self) -> logs.RetentionDays:
        name = self.node.try_get_context("log_retention") or "ONE_MONTH"
        try:
            return logs.RetentionDays[name]
        except KeyError:
            raise ValueError(
                f"context log_retention={name!r} is not one of {[r.name for r in logs.RetentionDays]}"
            ) from None


def cdk_json_context(path: Path = REPO_ROOT / "cdk.json") -> dict[str, Any]:
    """The ``context`` of cdk.json: feature flags and defaults (the CLI passes it too)."""
    return json.loads(path.read_text()).get("context", {})


def create_app(*, context: dict[str, Any] | None = None, outdir: str | None = None) -> tuple[App, SpotMigrationStack]:
    """The app with the stack and cdk-nag; ``python3 app.py`` and the tests both use this.

    cdk.json's context applies even without the CLI; ``context`` here, then context
    from the CLI (``-c key=value``), take precedence over it.
    """
    if outdir is None and not os.environ.get("CDK_OUTDIR"):
        outdir = str(REPO_ROOT / "cdk.out")
    app = App(context={**SYNTH_DEFAULTS, **cdk_json_context(), **(context or {})}, outdir=outdir)
    stack = SpotMigrationStack(app, STACK_NAME)
    enable_checks(app)
    return app, stack
