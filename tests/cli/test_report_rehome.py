"""The demo report's interruption section names what became of a stateful instance's disks."""

from spotctl.report import _interruptions

REHOMED = {"interrupted": "i-0aaa", "interrupted_pool": "r5.large/us-east-1a", "rule": "warning",
           "action": "rehoming", "rehome_status": "SUCCEEDED", "successor": "i-0bbb", "market": "spot",
           "successor_pool": "r6i.large/us-east-1a", "downtime_seconds": 121.4, "outcome": "moved"}


def test_a_rehomed_stateful_instance_names_its_successor_and_its_downtime():
    [title, line] = _interruptions([REHOMED])
    assert title.startswith("6. Spot interruptions")
    assert "i-0aaa (stateful, r5.large/us-east-1a)" in line and "moved to i-0bbb (spot r6i.large/us-east-1a)" in line
    assert line.endswith("down 121 s")


def test_a_rehome_that_failed_says_where_the_disks_are():
    failed = {**REHOMED, "rehome_status": "FAILED", "outcome": "no successor launched; the disks are on i-0aaa"}
    [_, line] = _interruptions([failed])
    assert "could not move on" in line and "the disks are on i-0aaa" in line
