"""Operating the product: CloudWatch alarms on what needs a person, each notifying the
product's topic when it goes into ALARM and when it is OK again, and one dashboard.

The handlers' own metrics are EMF, written by Powertools: namespace METRICS_NAMESPACE, and
Powertools adds the dimension ``service`` = SERVICE_NAME to every metric; a metric is identified
by its full set of dimensions, so the alarms name exactly the set the handler emits.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from spot_core.domain.outcomes import OUTCOMES
from spot_core.entry.catalog import METRICS_NAMESPACE, SERVICE_NAME

from .functions import logical_stem
from .storage import Storage

PERIOD = Duration.minutes(5)
SWEEP_PERIOD = Duration.hours(1)  # the sweeper reports once per scheduled run (infra/constructs/interruptions.py)
TREND_PERIOD = Duration.hours(1)  # dashboard graphs of migrations, which last hours
# Functions nothing else watches: the workflow's tasks end in the state machine's own
# failure paths (Catch -> rollback, or a failed execution, which end_execution handles).
ALARMED_FUNCTIONS = {
    "replace_interrupted": "Interruption warnings or rebalance recommendations were not handled; the events are "
                           "retried, then kept with their error in the dead-letter queue.",
    "sweep_orphans": "The orphan sweep failed; orphaned instances may keep running unnoticed.",
    "return_fallbacks": "Returning on-demand fallbacks to Spot failed; they keep running on-demand (a return "
                        "left unfinished is resumed by the next run).",
    "end_execution": "A migration whose execution failed, timed out or was aborted could not be ended: its status "
                     "and instance locks may be stale.",
}
INTERRUPTION_METRICS = ("InterruptionEvents", "RebalanceEvents", "ReplacementsLaunched", "OnDemandFallbacks",
                        "EventsIgnored")  # spot_core/entry/observability.py interruption_metrics


def emitted(metric_name: str, *, statistic: str = "Sum", period: Duration = PERIOD, label: str | None = None,
            **dimensions: str) -> cw.Metric:
    """A metric a handler emits (EMF): ``dimensions`` are the handler's own, besides ``service``."""
    return cw.Metric(namespace=METRICS_NAMESPACE, metric_name=metric_name, statistic=statistic, period=period,
                     dimensions_map={"service": SERVICE_NAME, **dimensions}, label=label)


class Operations(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *,
        storage: Storage, dead_letters: sqs.Queue, functions: Mapping[str, lambda_.Function],
        state_machine: sfn.StateMachine,
    ) -> None:
        super().__init__(scope, construct_id)
        self._prefix = Stack.of(self).stack_name
        self._action = cw_actions.SnsAction(storage.topic)
        storage.allow_alarm_notifications()
        self.alarms: dict[str, cw.Alarm] = {}

        dead_letter_depth = dead_letters.metric_approximate_number_of_messages_visible(
            statistic="Maximum", period=PERIOD)
        self._alarm("DeadLetters", dead_letter_depth,
                    "Events or invocations failed for good and wait in the interruption dead-letter queue "
                    "(the message attributes carry the error); redrive or delete them once handled.")
        for name, why in ALARMED_FUNCTIONS.items():
            errors = functions[name].metric_errors(statistic="Sum", period=PERIOD)
            self._alarm(f"{logical_stem(name)}Errors", errors, f"The {name} function reported errors. {why}")
        self._alarm("ExecutionsTimedOut", state_machine.metric_timed_out(statistic="Sum", period=PERIOD),
                    "A migration's execution timed out; end_execution records it and releases its instances.")
        self._alarm("ExecutionsAborted", state_machine.metric_aborted(statistic="Sum", period=PERIOD),
                    "A migration's execution was stopped; end_execution records it and releases its instances.")
        self._alarm("RollbackFailed", emitted("Migrations", Outcome="rollback_failed"),
                    "A rollback could not restore every instance: the migration record lists them, their Spot "
                    "replacements keep serving. Needs a person.")
        self._alarm("OrphansFound", emitted("OrphansFound", statistic="Maximum", period=SWEEP_PERIOD),
                    "The sweeper found managed instances nothing accounts for (see its log line 'orphans found'); "
                    "in report mode they keep running until terminated.")

        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"{self._prefix}-operations",
                                      default_interval=Duration.days(7))
        self.dashboard.add_widgets(cw.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values()),
                                                        width=24, height=4))
        self.dashboard.add_widgets(*self._migration_widgets(state_machine))
        self.dashboard.add_widgets(*self._interruption_widgets(dead_letter_depth))
        self.dashboard.add_widgets(self._graph(
            "Function errors", [fn.metric_errors(statistic="Sum", period=PERIOD, label=name)
                                for name, fn in functions.items()], width=24))

    def _alarm(self, construct_id: str, metric: cw.Metric, description: str) -> None:
        alarm = cw.Alarm(
            self, construct_id,
            alarm_name=f"{self._prefix}-{construct_id}",
            alarm_description=description,
            metric=metric,
            threshold=0,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            # These metrics only have data when something happens (an error, a failed
            # migration, a sweep); no data is no news.
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms[construct_id] = alarm

    @staticmethod
    def _graph(title: str, metrics: list[cw.IMetric], *, width: int = 12, **kwargs: object) -> cw.GraphWidget:
        return cw.GraphWidget(title=title, left=metrics, width=width, height=6, **kwargs)

    def _migration_widgets(self, state_machine: sfn.StateMachine) -> list[cw.IWidget]:
        trend = {"statistic": "Sum", "period": TREND_PERIOD}
        return [
            self._graph("Migrations by outcome", [emitted("Migrations", period=TREND_PERIOD, label=outcome,
                                                          Outcome=outcome) for outcome in OUTCOMES], stacked=True),
            self._graph("Executions", [
                state_machine.metric_started(label="started", **trend),
                state_machine.metric_succeeded(label="succeeded", **trend),
                state_machine.metric_failed(label="failed", **trend),
                state_machine.metric_timed_out(label="timed out", **trend),
                state_machine.metric_aborted(label="aborted", **trend),
            ]),
            self._graph("Instances migrated and rolled back", [
                emitted("InstancesMigrated", period=TREND_PERIOD, label="migrated (waves)"),
                emitted("InstancesMigrated", period=TREND_PERIOD, label="on Spot (completed migrations)",
                        Outcome="completed"),
                emitted("InstancesRestored", period=TREND_PERIOD, label="restored to on-demand (rollbacks)"),
                emitted("MigrationsRolledBack", period=TREND_PERIOD, label="migrations rolled back"),
            ]),
            self._graph("Realised savings (USD per month, completed migrations)", [
                emitted("MonthlySavings", period=TREND_PERIOD, label="monthly savings", Outcome="completed")]),
        ]

    def _interruption_widgets(self, dead_letter_depth: cw.Metric) -> list[cw.IWidget]:
        return [
            self._graph("Interruptions and replacements",
                        [emitted(name, label=name) for name in INTERRUPTION_METRICS]),
            self._graph("Event to launch (seconds)", [
                emitted("EventToLaunchSeconds", statistic=statistic, label=statistic)
                for statistic in ("p50", "p90", "Maximum")]),
            self._graph("Dead-letter queue depth", [dead_letter_depth.with_(label="messages")]),
            self._graph("Orphans found per sweep", [
                emitted("OrphansFound", statistic="Maximum", period=SWEEP_PERIOD, label="orphans")]),
        ]
