"""On-demand windows in the stack: the rule that tells the windows function a migration
succeeded, the schedule group its schedules go in, and the role Scheduler invokes it with."""

from __future__ import annotations

from template_helpers import flatten, listify, logical_id, of_type

from spot_core.entry.event_rules import execution_succeeded_pattern


def test_a_succeeded_migration_reaches_the_windows_function(stack, resources):
    machine = {"Ref": logical_id(stack, stack.workflow.state_machine)}
    windows = {"Fn::GetAtt": [logical_id(stack, stack.functions.functions["on_demand_windows"]), "Arn"]}
    [rule] = [r["Properties"] for r in of_type(resources, "AWS::Events::Rule").values()
              if r["Properties"].get("EventPattern", {}).get("detail", {}).get("status") == ["SUCCEEDED"]]
    expected = execution_succeeded_pattern("MACHINE")
    expected["detail"]["stateMachineArn"] = [machine]
    assert rule["EventPattern"] == expected
    [target] = rule["Targets"]
    assert target["Arn"] == windows and "DeadLetterConfig" in target


def test_scheduler_may_invoke_the_windows_function_and_nothing_else(stack, resources, statements_by_role):
    [group] = of_type(resources, "AWS::Scheduler::ScheduleGroup").values()
    assert group["Properties"]["Name"] == stack.functions.windows.group_name
    role = resources[logical_id(stack, stack.functions.windows.role)]["Properties"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    [invoke] = statements_by_role[logical_id(stack, stack.functions.windows.role)]
    assert invoke["Action"] == "lambda:InvokeFunction"
    assert invoke["Resource"] == {"Fn::GetAtt": [logical_id(stack, stack.functions.functions["on_demand_windows"]),
                                                 "Arn"]}


def test_the_windows_function_manages_schedules_of_its_group_only(stack, statements_by_role):
    own = statements_by_role[logical_id(stack, stack.functions.functions["on_demand_windows"].role)]
    schedules = [s for s in own if any(a.startswith("scheduler:") for a in listify(s["Action"]))]
    assert len(schedules) == 1
    assert flatten(schedules[0]["Resource"]) == (
        f"arn:<AWS::Partition>:scheduler:<AWS::Region>:<AWS::AccountId>:schedule/{stack.functions.windows.group_name}/*")
    [pass_role] = [s for s in own if "iam:PassRole" in listify(s["Action"])]
    assert pass_role["Resource"] == {"Fn::GetAtt": [logical_id(stack, stack.functions.windows.role), "Arn"]}
    ec2 = [a for s in own for a in listify(s["Action"]) if a.startswith("ec2:")]
    assert ec2 == []  # it moves nothing itself: the migrations it starts do
