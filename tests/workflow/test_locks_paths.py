"""One migration at a time per instance, end to end: overlapping migrations, and an execution
stopped from the console still ending its migration (the execution-status rule)."""

from spot_core.domain.plan import InstanceRecord


def held(rt, mid: str) -> list[str]:
    return rt.wiring.locks.held(mid)


def test_a_second_migration_over_the_same_instances_plans_none_of_those_the_first_holds(rt, auto):
    first = rt.start_migration({"quality": auto["quality"]})  # waits for a human decision, holding its instances
    rt.wait_for_status(first, "awaiting_approval")
    holding = held(rt, first)
    assert holding

    second = rt.run_migration(auto)

    assert second.status == "SUCCEEDED", second.cause
    records: list[InstanceRecord] = rt.records(second.migration_id)
    blocked = {r.instance_id for r in records if r.exclusion_reason == "held_by_migration"}
    assert blocked == set(holding)
    assert rt.migration(second.migration_id)["status"] == "nothing_to_migrate"
    assert rt.fleet.snapshot() == rt.before  # neither moved anything

    rt.decide(first, approved=False, reason="not this week")
    assert rt.wait(first).status == "FAILED"
    assert held(rt, first) == []


def test_an_execution_stopped_from_the_console_ends_its_migration_and_releases_its_instances(rt, auto):
    mid = rt.start_migration({"quality": auto["quality"]})
    rt.wait_for_status(mid, "awaiting_approval")
    assert held(rt, mid)

    rt.client("stepfunctions").stop_execution(executionArn=rt.execution_arn(mid), cause="operator stopped it")
    result = rt.wait(mid)

    assert result.status == "ABORTED"
    item = rt.migration(mid)
    assert item["status"] == "stopped" and item["outcome_detail"]["Error"] == "execution ABORTED"
    assert held(rt, mid) == []
    assert [e["result"]["status"] for e in rt.execution_events] == ["stopped"]
    assert any(n.get("status") == "stopped" or "stopped" in str(n) for n in rt.notifications())
    assert rt.fleet.snapshot() == rt.before
