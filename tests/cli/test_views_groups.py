"""spotctl's status and plan views show the plan's Auto Scaling groups: the policy each moves to,
the Spot share each wave reached, or why a group stays."""

from spot_core.domain.asg import GroupPolicy, GroupRecord
from spot_core.domain.views import MigrationDetail, group_view
from spotctl.views import render_plan, render_status

WEB = GroupRecord(name="web", arn="arn:g/web", eligible=True, desired=10, monthly_savings=412.5, status="migrating",
                  policy=GroupPolicy(instance_types=["m5.large", "m5a.large"], on_demand_base=2),
                  wave_spot_share={"0": 10.0, "1": 50.0}, attempts=["wave 2: 5 of 10 members on Spot"])
NODES = GroupRecord(name="nodes", arn="arn:g/nodes", eligible=False, desired=3, status="excluded",
                    exclusion_reason="managed_by_eks", exclusion_detail="an EKS managed node group")


def detail() -> MigrationDetail:
    return MigrationDetail(migration_id="mig-1", status="migrating", groups=[group_view(WEB), group_view(NODES)])


def test_status_shows_each_groups_spot_share_by_wave_or_why_it_stays():
    text = render_status(detail())
    assert "web: migrating, 10 instance(s), on-demand base 2, Spot share wave 1 10 %, wave 2 50 %" in text
    assert "nodes: excluded, managed_by_eks (an EKS managed node group)" in text


def test_the_plan_shows_the_policy_each_group_moves_to():
    text = render_plan(detail(), [])
    assert "Auto Scaling groups (2)" in text
    assert "web: 10 instance(s) -> Spot wave by wave above an on-demand base of 2, over m5.large, m5a.large" in text


def test_the_execution_graph_lists_each_group_and_the_spot_share_of_each_wave():
    from spotctl.graph import render_graph

    page = render_graph({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}, [], migration_id="mig-1",
                        status="RUNNING", groups=detail().groups)

    assert '<tr data-group="web"><td>web</td><td>10</td><td>migrating</td><td>10 %</td><td>50 %</td></tr>' in page
    assert '<tr data-group="nodes"><td>nodes</td><td>3</td><td>excluded: managed_by_eks</td><td>-</td><td>-</td></tr>' \
        in page
