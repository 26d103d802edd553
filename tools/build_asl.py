"""Writes statemachines/spot_migration.asl.json (run: python tools/build_asl.py).

The ASL is the artefact CDK deploys and the embedded runtime runs; this script only
keeps the repeated Retry blocks and Lambda task shapes consistent. Edit here, run it,
commit both.
"""

import json
from pathlib import Path

RETRY = [
    {
        "ErrorEquals": [
            "Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
            "Lambda.TooManyRequestsException", "Lambda.Unknown", "TransientAwsError",
        ],
        "IntervalSeconds": 2, "MaxAttempts": 6, "BackoffRate": 2.0, "MaxDelaySeconds": 60, "JitterStrategy": "FULL",
    },
    # The function died mid-way (its timeout, out of memory, the runtime exiting): every handler
    # records each step before the next AWS call, so running it again resumes where it stopped.
    # Not States.Timeout: that is the approval's own timeout, which its Catch handles.
    {
        "ErrorEquals": ["Sandbox.Timedout", "Runtime.ExitError", "Runtime.OutOfMemory"],
        "IntervalSeconds": 5, "MaxAttempts": 3, "BackoffRate": 2.0, "JitterStrategy": "FULL",
    },
]


def task(placeholder, payload, result_path, next_state=None, result_selector=None, **extra):
    state = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": f"${{{placeholder}}}", "Payload": payload},
        "ResultSelector": result_selector or {"result.$": "$.Payload"},
        "ResultPath": result_path,
        "Retry": RETRY,
    }
    state.update(extra)
    if next_state:
        state["Next"] = next_state
    else:
        state["End"] = True
    return state


MID = {"migration_id.$": "$.migration_id"}


def finalize(outcome, next_state, detail_path=None, **extra):
    payload = {**MID, "outcome": outcome}
    if detail_path:
        payload["detail.$"] = detail_path
    return task("FinalizeFunctionArn", payload, "$.final", next_state, **extra)


def review_branch(name, placeholder):
    return {
        "StartAt": name,
        "States": {
            name: task(placeholder, MID, "$", result_selector={"verdict.$": "$.Payload"}, OutputPath="$.verdict"),
        },
    }


wave_iteration = {
    "ProcessorConfig": {"Mode": "INLINE"},
    "StartAt": "MigrateWave",
    "States": {
        "MigrateWave": task("MigrateWaveFunctionArn", {**MID, "wave.$": "$.wave"}, "$.progress", "WaveComplete",
                            result_selector={"done.$": "$.Payload.done", "completed_at.$": "$.Payload.completed_at",
                                             "migrated.$": "$.Payload.migrated", "failed.$": "$.Payload.failed",
                                             "total.$": "$.Payload.total",
                                             "wait_seconds.$": "$.Payload.wait_seconds"}),
        "WaveComplete": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.progress.done", "BooleanEquals": True, "Next": "Bake"}],
            "Default": "WaitForReplacements",
        },
        # Boots, health checks and draining are waited for here, not in a Lambda: MigrateWave
        # says how long until its next step is due.
        "WaitForReplacements": {"Type": "Wait", "SecondsPath": "$.progress.wait_seconds", "Next": "MigrateWave"},
        "Bake": {"Type": "Wait", "SecondsPath": "$.wave.bake_seconds", "Next": "QualityGate"},
        "QualityGate": task("QualityGateFunctionArn",
                            {**MID, "wave.$": "$.wave", "since.$": "$.progress.completed_at"}, "$.gate",
                            "GateVerdict",
                            result_selector={"passed.$": "$.Payload.passed", "score.$": "$.Payload.score",
                                             "pending.$": "$.Payload.pending",
                                             "wait_seconds.$": "$.Payload.wait_seconds"}),
        "GateVerdict": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.gate.pending", "BooleanEquals": True, "Next": "WaitForProbes"}],
            "Default": "WaveSucceeded",
        },
        # The gate sent the wave's health probes (SSM Run Command): their results are waited for
        # here, not in a Lambda; the gate says how long.
        "WaitForProbes": {"Type": "Wait", "SecondsPath": "$.gate.wait_seconds", "Next": "QualityGate"},
        "WaveSucceeded": {
            "Type": "Pass",
            "Parameters": {"wave.$": "$.wave.index", "percent.$": "$.wave.percent", "migrated.$": "$.progress.migrated",
                           "total.$": "$.progress.total", "score.$": "$.gate.score"},
            "End": True,
        },
    },
}

definition = {
    "Comment": "Migrates opted-in EC2 instances from on-demand to Spot: analysis, agent reviews, "
               "approval, waves with bake time and quality gates, rollback on any failure.",
    "TimeoutSeconds": 14 * 24 * 3600,
    "StartAt": "Analyze",
    "States": {
        "Analyze": task("AnalyzeFunctionArn", {"migration_id.$": "$$.Execution.Name", "request.$": "$"}, "$",
                        "HasCandidates",
                        result_selector={"migration_id.$": "$.Payload.migration_id", "request.$": "$.Payload.request",
                                         "plan.$": "$.Payload.plan"}),
        "HasCandidates": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.plan.candidates", "NumericGreaterThan": 0, "Next": "Reviews"}],
            "Default": "NothingToMigrate",
        },
        "NothingToMigrate": finalize("nothing_to_migrate", "Done"),
        "Reviews": {
            "Type": "Parallel",
            "Branches": [
                review_branch("PerformanceAgent", "ReviewPerformanceFunctionArn"),
                review_branch("CapacityAgent", "ReviewCapacityFunctionArn"),
                review_branch("ApplicationAgent", "ReviewApplicationFunctionArn"),
            ],
            "ResultPath": "$.verdicts",
            "Next": "ConsolidateReviews",
        },
        "ConsolidateReviews": task("ConsolidateReviewsFunctionArn", {**MID, "verdicts.$": "$.verdicts"}, "$.review",
                                   "ReviewOutcome",
                                   result_selector={"approved.$": "$.Payload.approved",
                                                    "vetoed_by.$": "$.Payload.vetoed_by",
                                                    "candidates.$": "$.Payload.candidates",
                                                    "waves.$": "$.Payload.waves",
                                                    "monthly_savings.$": "$.Payload.monthly_savings"}),
        "ReviewOutcome": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.review.approved", "BooleanEquals": False, "Next": "RecordVeto"},
                {"Variable": "$.review.candidates", "NumericEquals": 0, "Next": "NothingToMigrate"},
                {"Variable": "$.request.dry_run", "BooleanEquals": True, "Next": "RecordDryRun"},
                {"Variable": "$.request.approval.auto_approve", "BooleanEquals": True, "Next": "CaptureBaseline"},
            ],
            "Default": "RequestApproval",
        },
        "RecordVeto": finalize("vetoed", "Vetoed", "$.review"),
        "Vetoed": {"Type": "Fail", "Error": "MigrationVetoed",
                   "Cause": "An agent review vetoed the migration; the fleet was not touched."},
        "RecordDryRun": finalize("planned", "Done"),
        "RequestApproval": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": "${RequestApprovalFunctionArn}",
                           "Payload": {**MID, "task_token.$": "$$.Task.Token", "execution_arn.$": "$$.Execution.Id"}},
            "TimeoutSecondsPath": "$.request.approval.timeout_seconds",
            "ResultPath": "$.approval",
            "Retry": RETRY,
            "Catch": [
                {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.approval_error", "Next": "RecordApprovalTimeout"},
            ],
            "Next": "ApprovalDecision",
        },
        "ApprovalDecision": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.approval.approved", "BooleanEquals": True, "Next": "CaptureBaseline"}],
            "Default": "RecordRejection",
        },
        "RecordApprovalTimeout": finalize("approval_timed_out", "ApprovalTimedOut"),
        "ApprovalTimedOut": {"Type": "Fail", "Error": "ApprovalTimedOut",
                             "Cause": "Nobody approved the migration in time; the fleet was not touched."},
        "RecordRejection": finalize("rejected", "Rejected", "$.approval"),
        "Rejected": {"Type": "Fail", "Error": "MigrationRejected",
                     "Cause": "The customer rejected the migration; the fleet was not touched."},
        "CaptureBaseline": task("CaptureBaselineFunctionArn", MID, "$.baseline", "Waves"),
        "Waves": {
            "Type": "Map",
            "ItemsPath": "$.review.waves",
            "ItemSelector": {"migration_id.$": "$.migration_id", "wave.$": "$$.Map.Item.Value"},
            "MaxConcurrency": 1,
            "ItemProcessor": wave_iteration,
            "ResultPath": "$.waves",
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Rollback"}],
            "Next": "Finalize",
        },
        "Rollback": task("RollbackFunctionArn", {**MID, "failure.$": "$.failure"}, "$.rollback", "RollbackComplete",
                         result_selector={"done.$": "$.Payload.done", "restored.$": "$.Payload.restored",
                                          "terminated.$": "$.Payload.terminated"},
                         Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.rollback_error",
                                 "Next": "RecordRollbackFailure"}]),
        "RollbackComplete": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.rollback.done", "BooleanEquals": True, "Next": "RolledBack"}],
            "Default": "WaitForRestore",
        },
        "WaitForRestore": {"Type": "Wait", "Seconds": 20, "Next": "Rollback"},
        "RolledBack": {"Type": "Fail", "Error": "MigrationRolledBack",
                       "Cause": "A wave or quality gate failed; every migrated instance is back on on-demand "
                                "and the Spot replacements are terminated."},
        # Recording it must not turn a failed rollback into a plain Lambda error: the execution ends
        # RollbackFailed either way (end_execution then records the migration as rollback_failed).
        "RecordRollbackFailure": finalize("rollback_failed", "RollbackFailed", "$.rollback_error",
                                          Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.record_error",
                                                  "Next": "RollbackFailed"}]),
        "RollbackFailed": {"Type": "Fail", "Error": "RollbackFailed",
                           "Cause": "Rollback could not restore every instance; the migration record lists them. "
                                    "Spot replacements of unrestored instances were kept serving."},
        "Finalize": finalize("completed", "Done"),
        "Done": {"Type": "Succeed"},
    },
}

REHOME = {"migration_id.$": "$.migration_id", "original_id.$": "$.original_id", "interrupted.$": "$.interrupted"}

# One execution per interrupted stateful Spot instance (named rehome-<instance id>): the disks
# move on to a new instance, one short pass per invocation, the waits in between here.
rehome_definition = {
    "Comment": "Moves the disks of a stateful Spot instance EC2 took back to a new instance in the same "
               "Availability Zone: launch, park, move the volumes, interfaces and addresses, prove health.",
    "TimeoutSeconds": 6 * 3600,
    "StartAt": "Rehome",
    "States": {
        "Rehome": task("RehomeStatefulFunctionArn", REHOME, "$.progress", "RehomeDone",
                       result_selector={"done.$": "$.Payload.done", "phase.$": "$.Payload.phase",
                                        "wait_seconds.$": "$.Payload.wait_seconds"},
                       Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "GiveUp"}]),
        "RehomeDone": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.progress.phase", "StringEquals": "failed", "Next": "RehomeFailed"},
                        {"Variable": "$.progress.done", "BooleanEquals": True, "Next": "Ended"}],
            "Default": "WaitForInstances",
        },
        "WaitForInstances": {"Type": "Wait", "SecondsPath": "$.progress.wait_seconds", "Next": "Rehome"},
        # Its retries spent: the re-home ends failed on the record, saying where the disks are.
        "GiveUp": task("RehomeStatefulFunctionArn", {**REHOME, "error.$": "$.error"}, "$.progress", "RehomeFailed",
                       result_selector={"phase.$": "$.Payload.phase"},
                       Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.give_up_error",
                               "Next": "RehomeFailed"}]),
        "RehomeFailed": {"Type": "Fail", "Error": "RehomeFailed",
                         "Cause": "The disks could not be moved to a new instance; the migration record says "
                                  "where they are."},
        "Ended": {"Type": "Succeed"},
    },
}

MACHINES = {"spot_migration": definition, "stateful_rehome": rehome_definition}

if __name__ == "__main__":
    for name, machine in MACHINES.items():
        out = Path(__file__).resolve().parent.parent / "statemachines" / f"{name}.asl.json"
        out.write_text(json.dumps(machine, indent=2) + "\n")
        print(f"wrote {out}")
