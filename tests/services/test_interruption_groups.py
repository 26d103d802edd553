"""Members of an Auto Scaling group a migration moved to Spot: the group replaces them itself
(Capacity Rebalancing), so the replacement function launches nothing; what EC2 takes back is
remembered in pool memory, so plans and the group's next policy avoid the pool."""

from __future__ import annotations

import pytest
from builders import WEB, interruptions, launches, serving

from spot_core.domain.interruptions import Notice
from spot_core.domain.tags import AUTO_SCALING_GROUP_TAG, GROUP_MIGRATION_TAG

MEMBER = {AUTO_SCALING_GROUP_TAG: "web-asg", GROUP_MIGRATION_TAG: "mig-1", "Name": "web"}


@pytest.mark.parametrize("kind", ["interruption", "rebalance"])
def test_a_warned_spot_member_is_left_to_its_group_and_only_a_warning_is_remembered(p, kind):
    member = serving(p, 1, (WEB,), lifecycle="spot", tags=MEMBER)[0]

    outcome = interruptions(p).handle(Notice("e-1", member.instance_id, kind, p.clock.now()))

    assert outcome.action == "group_replaces" and outcome.replacement_id is None
    assert launches(p) == [] and p.claims.all() == [] and p.notifier.sent == []
    remembered = {(member.instance_type, member.availability_zone)} if kind == "interruption" else set()
    assert p.pool_memory.recent_interruptions() == remembered


def test_a_member_ec2_reclaims_without_a_warning_is_remembered_one_the_group_terminates_is_not(p):
    reclaimed, refreshed = serving(p, 2, (WEB,), lifecycle="spot", tags=MEMBER, instance_type="m5a.large")
    p.fleet.reclaim(reclaimed.instance_id)
    p.fleet.terminate([refreshed.instance_id])  # an instance refresh or a scale-in: the group's own doing

    outcomes = [interruptions(p).handle(Notice(f"e-{i.instance_id}", i.instance_id, "state-change", p.clock.now(),
                                               state="shutting-down")) for i in (reclaimed, refreshed)]

    assert [o.action for o in outcomes] == ["group_replaces", "group_replaces"]
    assert launches(p) == []
    assert [i for _, _, i in p.pool_memory.interrupted] == [reclaimed.instance_id]


def test_an_on_demand_member_warned_of_nothing_is_not_a_spot_pool(p):
    member = serving(p, 1, (WEB,), tags=MEMBER)[0]  # the group's on-demand base

    outcome = interruptions(p).handle(Notice("e-1", member.instance_id, "interruption", p.clock.now()))

    assert outcome.action == "group_replaces" and p.pool_memory.recent_interruptions() == set()


def test_a_member_of_a_group_no_migration_moved_is_not_ours(p):
    member = serving(p, 1, (WEB,), lifecycle="spot", tags={AUTO_SCALING_GROUP_TAG: "other-asg"})[0]

    outcome = interruptions(p).handle(Notice("e-1", member.instance_id, "interruption", p.clock.now()))

    assert outcome.action == "ignored" and p.pool_memory.recent_interruptions() == set()
