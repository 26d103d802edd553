"""The interruption queue on the embedded runtime (as the stack deploys it: batches, partial
batch failures, retries, the dead-letter queue with the reason) and the AWS calls of one
warning: the same few whatever the size of the migration that launched the instance."""

from collections import Counter

import boto3
import pytest
from ec2_events import ec2_event, sample

from spot_core.adapters.ec2 import Ec2Fleet
from spot_core.domain.errors import TransientAwsError
from spot_core.domain.interruptions import LaunchProfile, RecordRef
from spot_core.domain.outcomes import realised_now
from spot_core.domain.plan import InstanceRecord, Pool, TargetRef
from spot_core.domain.tags import MANAGED_TAG, MIGRATION_ID_TAG, REPLACES_TAG
from spot_core.entry.interruption_queue import BATCH_SIZE, MAX_RECEIVES
from spotctl.local.ec2_events import REPLACER

# One warning, once the execution environment is warm (prices, subnets, recent pools): the
# interrupted instance described, the claim (which returns the instance's launch profile), the
# launch, the launch recorded (with the registry, the replacement's profile and the pool), the
# registration and the swap, the notification, the end of the takeover (with the migration record).
# Never the whole plan, the account's target groups, the VPC's subnets or the pool memory.
ONE_WARNING = {"ec2:DescribeInstances": 1, "dynamodb:UpdateItem": 1, "ec2:RunInstances": 1,
               "dynamodb:TransactWriteItems": 2, "elasticloadbalancing:RegisterTargets": 1,
               "elasticloadbalancing:DeregisterTargets": 1, "sns:Publish": 1}
# An instance launched without a profile (by an earlier version, or a launch resumed after a
# crash) costs two reads more: its migration record by key, and its user data.
WITHOUT_PROFILE = {**ONE_WARNING, "dynamodb:BatchGetItem": 1, "ec2:DescribeInstanceAttribute": 1}


@pytest.fixture
def calls(rt):
    """service:Operation -> SDK calls the replacement function made (one per call: a transaction is one)."""
    made: Counter = Counter()

    def count(model=None, **_):
        if getattr(rt.lambdas._current, "function", None) == REPLACER:
            meta = model.service_model.metadata
            made[f"{meta.get('signingName') or meta['endpointPrefix']}:{model.name}"] += 1

    session = boto3._get_default_session()  # before the handler creates its clients: they copy the hooks
    session.events.register("before-call", count, unique_id="test-interruption-calls")
    yield made
    session.events.unregister("before-call", unique_id="test-interruption-calls")


def migration(rt, migration_id: str, records: int, live: int = 2, profiles: bool = True) -> list[str]:
    """A completed migration of `records` instances, `live` of whose replacements run behind the
    ALB, registered with their launch profiles as the wave engine writes them (`profiles`)."""
    victims = rt.fleet.launch("c5.large", f"{migration_id}-spot", "us-east-1b", {MANAGED_TAG: "true"}, count=live,
                              market="spot")
    originals = [f"i-{n:017x}" for n in range(records)]
    for victim, original in zip(victims, originals, strict=False):
        rt.client("ec2").create_tags(Resources=[victim], Tags=[{"Key": MIGRATION_ID_TAG, "Value": migration_id},
                                                               {"Key": REPLACES_TAG, "Value": original}])
    group = [TargetRef(arn=rt.fleet.target_group_arn, port=80)]
    pool = [Pool(instance_type="c5.large", availability_zone="us-east-1b", spot_hourly=0.03)]
    plan = [InstanceRecord(instance_id=o, instance_type="c5.large", availability_zone="us-east-1b", eligible=True,
                           status="migrated", replacement_id=victims[n] if n < live else f"i-{n + records:017x}",
                           replacement_type="c5.large", replacement_az="us-east-1b", replacement_spot_hourly=0.03,
                           on_demand_hourly=0.085, target_groups=group, pools=pool) for n, o in enumerate(originals)]
    rt.wiring.plans.put_records(migration_id, plan)
    rt.wiring.registry.register_all(victims, f"migration {migration_id}", {
        r.replacement_id: LaunchProfile(target_groups=group, record=RecordRef.of(migration_id, r))
        for r in plan[:live] if r.replacement_id} if profiles else None)
    rt.wiring.migrations.create(migration_id, {}, status="completed")
    rt.wiring.migrations.update(migration_id, realised={
        "instances": records, "on_spot": records, "on_demand_fallbacks": 0, "monthly_on_demand": 62.05 * records,
        "monthly_spot": 21.9 * records, "monthly_savings": 40.15 * records, "savings_pct": 64.7})
    return victims


def one_warning(rt, calls: Counter, instance_id: str) -> Counter:
    before = Counter(calls)
    [delivery] = rt.put_ec2_event(ec2_event(instance_id))
    assert delivery["result"]["action"] == "replaced", delivery
    return calls - before


def test_one_warning_costs_the_same_few_calls_whatever_the_size_of_the_migration(rt, calls):
    small, large = migration(rt, "mig-small", 5), migration(rt, "mig-large", 1500)
    # (a) instances launched by an interruption (their predecessors' claims know their target groups)
    warm, standalone = (d["result"]["replacement_id"] for d in rt.put_ec2_events([ec2_event(rt.managed[0]),
                                                                                  ec2_event(rt.managed[1])]))
    assert rt.wiring.fleet.describe([warm])[warm].instance_type == rt.wiring.fleet.describe(
        [standalone])[standalone].instance_type
    one_warning(rt, calls, warm)  # warms the environment for the types of both kinds
    one_warning(rt, calls, small[0])

    a, b_small, b_large = (one_warning(rt, calls, i) for i in (standalone, small[1], large[0]))

    assert b_large == b_small == ONE_WARNING  # a plan of 1,500 records costs what one of 5 does
    assert a == ONE_WARNING  # the profile written when the interruption launched it
    assert sum(a.values()) == 8
    record = rt.wiring.plans.records_by_key([("mig-large", "i-" + "0" * 17)])[("mig-large", "i-" + "0" * 17)]
    assert record.replacement_id != large[0] and record.replacement_market == "spot"
    realised = realised_now(rt.wiring.migrations.get("mig-large")) or {}  # the drift of the one record
    assert realised["monthly_spot"] == pytest.approx(21.9 * 1500 + (record.replacement_spot_hourly - 0.03) * 730,
                                                     abs=0.01)


def test_an_instance_launched_without_a_profile_costs_two_reads_more(rt, calls):
    old = migration(rt, "mig-old", 300, profiles=False)
    one_warning(rt, calls, old[0])  # warms the environment for its type

    assert one_warning(rt, calls, old[1]) == WITHOUT_PROFILE


def test_a_storm_is_handled_in_batches_that_share_describes_registrations_and_notifications(rt, calls):
    storm = rt.fleet.launch("c5.large", "batch-spot", "us-east-1b", {MANAGED_TAG: "true"}, count=25, market="spot")
    for iid in storm:
        rt.wiring.registry.register(iid, "storm fleet")
    first = len(rt.lambdas.invocations)

    deliveries = rt.put_ec2_events([ec2_event(i) for i in storm])

    assert [d["result"]["action"] for d in deliveries] == ["replaced"] * 25
    batches = -(-25 // BATCH_SIZE)
    assert len(rt.lambdas.invocations) - first == batches
    for shared in ("ec2:DescribeInstances", "elasticloadbalancing:RegisterTargets",
                   "elasticloadbalancing:DeregisterTargets", "sns:Publish"):
        assert calls[shared] == batches, shared
    for own in ("dynamodb:UpdateItem", "ec2:RunInstances"):
        assert calls[own] == 25, own
    assert calls["dynamodb:TransactWriteItems"] == 50


def test_a_failing_event_is_retried_then_kept_with_its_reason_while_the_rest_of_its_batch_is_replaced(
        rt, monkeypatch):
    failing = rt.managed[1]
    user_data = Ec2Fleet.user_data

    def refused_for_one(self, instance_id):
        if instance_id == failing:
            raise TransientAwsError("ec2:DescribeInstanceAttribute: RequestLimitExceeded")
        return user_data(self, instance_id)

    monkeypatch.setattr(Ec2Fleet, "user_data", refused_for_one)

    deliveries = rt.put_ec2_events([ec2_event(i) for i in rt.managed])

    by_instance = {d.get("result", {}).get("instance_id"): d for d in deliveries}
    assert [by_instance[i]["result"]["action"] for i in rt.managed if i != failing] == ["replaced"] * 2
    [failed] = [d for d in deliveries if "error" in d]
    assert failed["attempts"] == MAX_RECEIVES and failed["error"]["errorType"] == "TransientAwsError"
    [dead] = rt.dead_letters()
    assert dead["requestPayload"]["detail"]["instance-id"] == failing
    assert dead["responsePayload"] == {"errorType": "TransientAwsError",
                                       "errorMessage": "ec2:DescribeInstanceAttribute: RequestLimitExceeded"}
    assert dead["requestContext"]["condition"] == "RetriesExhausted"
    assert dead["requestContext"]["approximateInvokeCount"] == MAX_RECEIVES
    assert rt.wiring.claims.get(failing) is None  # nothing launched for it: the next event starts afresh


def test_an_invalid_event_is_kept_with_its_reason_at_once_and_fails_nothing_else(rt):
    malformed = sample("ec2_malformed_interruption.json")

    bad, good = rt.put_ec2_events([malformed, ec2_event(rt.managed[0])])

    assert (bad["attempts"], bad["error"]["errorType"]) == (1, "InvalidEvent")
    assert good["result"]["action"] == "replaced"
    [dead] = rt.dead_letters()
    assert (dead["requestContext"]["condition"], dead["requestPayload"]["id"]) == ("InvalidEvent", malformed["id"])


def test_an_event_whose_last_delivery_died_reaches_the_dead_letter_queue_through_the_redrive(rt):
    victim = rt.managed[2]
    for _ in range(MAX_RECEIVES):  # killed at its timeout right after its first mutating call, every time
        rt.lambdas.crash_after(REPLACER, 1, when=lambda event: victim in str(event))

    [delivery] = rt.put_ec2_event(ec2_event(victim))

    assert delivery["attempts"] == MAX_RECEIVES and delivery["error"]["errorType"] == "Sandbox.Timedout"
    [dead] = rt.dead_letters()
    assert dead["requestContext"]["condition"] == "RedrivenBySqs"  # its reason is the function's log of it
    assert dead["requestPayload"]["detail"]["instance-id"] == victim
