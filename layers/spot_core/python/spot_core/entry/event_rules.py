"""The EventBridge rule patterns, as plain data: the CDK stack deploys them and the
embedded runtime matches events against them with moto's EventPattern, so the two
cannot drift."""

from __future__ import annotations

from typing import Any

from ..domain.interruptions import RECLAIMED_STATES

INTERRUPTION_WARNING = "EC2 Spot Instance Interruption Warning"
REBALANCE_RECOMMENDATION = "EC2 Instance Rebalance Recommendation"
EXECUTION_STATUS_CHANGE = "Step Functions Execution Status Change"
# Execution statuses that end a migration without its own Finalize step having run
# (stopped from the console, a state without a Catch failing for good, the execution timing out).
UNFINISHED_END_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")

INSTANCE_STATE_CHANGE = "EC2 Instance State-change Notification"
# The warning is best effort: EC2 may take a Spot instance back without one. Reclaimed, it goes to
# shutting-down then terminated (one-time requests, as the product launches them) or to stopping then
# stopped (persistent requests that stop); both steps match, so a state change lost or read before its
# reason is visible is made up for by the next. EventBridge cannot filter on tags: the function drops
# other instances (one describe) and every stop or terminate that EC2 did not initiate.
RECLAIM_STATES = RECLAIMED_STATES

RULES = {
    "SpotInterruptionWarning": {"source": ["aws.ec2"], "detail-type": [INTERRUPTION_WARNING]},
    "RebalanceRecommendation": {"source": ["aws.ec2"], "detail-type": [REBALANCE_RECOMMENDATION]},
    "InstanceReclaimed": {"source": ["aws.ec2"], "detail-type": [INSTANCE_STATE_CHANGE],
                          "detail": {"state": list(RECLAIM_STATES)}},
}


def execution_ended_pattern(state_machine_arn: str) -> dict[str, Any]:
    """The migration state machine's executions that ended in any way but success."""
    return {
        "source": ["aws.states"],
        "detail-type": [EXECUTION_STATUS_CHANGE],
        "detail": {"status": list(UNFINISHED_END_STATUSES), "stateMachineArn": [state_machine_arn]},
    }


def execution_succeeded_pattern(state_machine_arn: str) -> dict[str, Any]:
    """The migration state machine's executions that succeeded (a migration's windows get scheduled)."""
    return {
        "source": ["aws.states"],
        "detail-type": [EXECUTION_STATUS_CHANGE],
        "detail": {"status": ["SUCCEEDED"], "stateMachineArn": [state_machine_arn]},
    }
