"""What the workflow tests check of a run: the plan's records and the fleet left as it was."""


def records(rt, mid):
    return {r.instance_id: r for r in rt.records(mid)}


def assert_untouched(rt):
    after = rt.fleet.snapshot()
    assert after == rt.before, "the fleet must be exactly as it was"
