"""The embedded runtime's timing simulator (spotctl/local/timing.py): EC2 and ELB on a virtual
clock. Every assertion is about simulated semantics and virtual time, never real time."""

from __future__ import annotations

import json
import re
import types
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from spot_core.adapters import aws
from spot_core.domain import clock as domain_clock
from spot_core.domain.clock import SystemClock
from spot_core.domain.request import DEFAULT_BAKE_SECONDS
from spotctl.local.runtime import LocalRuntime
from spotctl.local.timing import CASES, BucketSpec, TimingModel, combinations, physical_bound

REPO = Path(__file__).resolve().parents[2]
NO_RETRY = Config(retries={"mode": "standard", "total_max_attempts": 1})


def _runtime(model: TimingModel) -> LocalRuntime:
    return LocalRuntime(seed=5, timing=model)


def _prepare(rt: LocalRuntime) -> None:
    """The network and the AMI, outside the simulation (as seeding is)."""
    rt.fleet.setup_network()
    rt.fleet.image_id()


def _launch(rt: LocalRuntime, ec2, min_count: int = 1, max_count: int = 1) -> list[dict]:
    subnet = next(iter(rt.fleet.subnets.values()))
    return ec2.run_instances(ImageId=rt.fleet.image_id(), InstanceType="m5.large", MinCount=min_count,
                             MaxCount=max_count, SubnetId=subnet)["Instances"]


def _states(ec2, ids: list[str]) -> dict[str, str]:
    reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    return {i["InstanceId"]: i["State"]["Name"] for r in reservations for i in r["Instances"]}


def _target_states(elbv2, arn: str, ids: list[str] | None = None) -> dict[str, str]:
    kwargs = {"Targets": [{"Id": i} for i in ids]} if ids else {}
    health = elbv2.describe_target_health(TargetGroupArn=arn, **kwargs)["TargetHealthDescriptions"]
    return {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in health}


def test_a_launched_instance_is_pending_until_its_virtual_boot_time_then_running():
    with _runtime(TimingModel(boot_seconds=(30.0, 30.0))) as rt:
        ec2 = rt.client("ec2")
        _prepare(rt)
        with rt.timing.simulating():
            launched = _launch(rt, ec2, min_count=1, max_count=3)
            ids = [i["InstanceId"] for i in launched]
            assert len(ids) == 3, "EC2 launches up to MaxCount when it has the capacity"
            assert {i["State"]["Name"] for i in launched} == {"pending"}
            started = rt.timing.clock.seconds
            rt.timing.clock.advance(29.0 - (rt.timing.clock.seconds - started))
            assert set(_states(ec2, ids).values()) == {"pending"}
            rt.timing.clock.advance(1.5)
            assert set(_states(ec2, ids).values()) == {"running"}
            stopping = ec2.stop_instances(InstanceIds=ids[:1])["StoppingInstances"][0]
            assert stopping["CurrentState"]["Name"] == "stopping"
            rt.timing.clock.advance(rt.timing.model.stop_seconds + 1)
            assert _states(ec2, ids[:1]) == {ids[0]: "stopped"}
        assert rt.timing.report()["launched"] == 3


def test_run_instances_beyond_the_resource_bucket_is_refused_and_consumes_nothing():
    # no latency: the bucket refills only when the test moves the clock
    model = TimingModel(resources={"RunInstances": BucketSpec(10, 2)}, latencies=(("", 0.0),))
    with _runtime(model) as rt:
        ec2 = boto3.client("ec2", region_name=rt.region, config=NO_RETRY)  # the refusal itself, not a retry
        _prepare(rt)
        with rt.timing.simulating():
            assert len(_launch(rt, ec2, 8, 8)) == 8
            with pytest.raises(ClientError) as refused:
                _launch(rt, ec2, 5, 5)
            assert refused.value.response["Error"]["Code"] == "RequestLimitExceeded"
            assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            assert len(_launch(rt, ec2, 2, 2)) == 2, "the refused request took no tokens"
            with pytest.raises(ClientError):
                _launch(rt, ec2, 1, 1)
            rt.timing.clock.advance(2.5)  # 2 instances a second
            assert len(_launch(rt, ec2, 5, 5)) == 5
        assert rt.timing.report()["request_limit_exceeded"] == {"RunInstances/resources": 2}


def test_the_handlers_adaptive_client_retries_a_throttled_launch_on_virtual_time():
    model = TimingModel(resources={"RunInstances": BucketSpec(10, 2)})
    with _runtime(model) as rt:
        ec2 = aws.client("ec2", rt.region)  # the handlers' client: adaptive retries, 10 attempts
        _prepare(rt)
        with rt.timing.simulating():
            _launch(rt, ec2, 10, 10)
            before = rt.timing.clock.seconds
            assert len(_launch(rt, ec2, 4, 4)) == 4
        assert rt.timing.clock.seconds - before >= 2.0, "4 instances at 2 a second: the back-off slept virtually"
        assert rt.timing.report()["request_limit_exceeded"]["RunInstances/resources"] >= 1


def test_describe_calls_have_their_own_request_bucket():
    with _runtime(TimingModel(latencies=(("", 0.0),))) as rt:  # no latency: the bucket does not refill
        ec2 = boto3.client("ec2", region_name=rt.region, config=NO_RETRY)
        with rt.timing.simulating():
            for _ in range(100):
                ec2.describe_instances()
            with pytest.raises(ClientError, match="RequestLimitExceeded"):
                ec2.describe_instances()
            ec2.describe_images(Owners=["amazon"])  # another action, another bucket
            rt.timing.clock.advance(0.05)  # 20 tokens a second
            ec2.describe_instances()


def test_a_target_is_initial_until_health_checks_pass_and_draining_for_exactly_the_delay():
    model = TimingModel(boot_seconds=(30.0, 30.0), health_check_interval=20, healthy_threshold=3,
                        deregistration_delay=120)
    with _runtime(model) as rt:
        rt.fleet.seed_fleet(3)
        arn = rt.fleet.target_group_arn
        ec2, elbv2 = rt.client("ec2"), rt.client("elbv2")
        model.configure_target_group(elbv2, arn)
        _prepare(rt)
        with rt.timing.simulating():
            new = _launch(rt, ec2)[0]["InstanceId"]
            with pytest.raises(ClientError, match="not in a running state"):
                elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": new}])
            rt.timing.clock.advance(31)
            elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": new}])
            registered = rt.timing.clock.seconds
            rt.timing.clock.advance(60 - 0.5 - (rt.timing.clock.seconds - registered))
            assert _target_states(elbv2, arn, [new]) == {new: "initial"}
            rt.timing.clock.advance(1.0)
            assert _target_states(elbv2, arn, [new]) == {new: "healthy"}

            old = next(i for i in _target_states(elbv2, arn) if i != new)  # a seeded target, healthy
            elbv2.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": old}])
            deregistered = rt.timing.clock.seconds
            assert _target_states(elbv2, arn)[old] == "draining", "listed while it drains"
            rt.timing.clock.advance(120 - 0.5 - (rt.timing.clock.seconds - deregistered))
            assert _target_states(elbv2, arn, [old]) == {old: "draining"}
            rt.timing.clock.advance(1.0)
            assert _target_states(elbv2, arn, [old]) == {old: "unused"}
            assert old not in _target_states(elbv2, arn)


def test_the_lambda_context_and_the_handlers_clock_run_on_the_virtual_clock_and_a_late_invocation_is_killed():
    with _runtime(TimingModel()) as rt:
        name = "spot-migration-finalize"
        timeout = rt.lambdas.specs[name].timeout_seconds
        seen: dict = {}

        def lambda_handler(event, context):
            seen["remaining"] = [context.get_remaining_time_in_millis()]
            seen["now"] = (SystemClock().now(), domain_clock.utc_now(), rt.timing.clock.now())
            SystemClock().sleep(100)
            seen["remaining"].append(context.get_remaining_time_in_millis())
            SystemClock().sleep(timeout)  # past the deadline
            seen["after_deadline"] = True
            return {}

        rt.lambdas.handler(name)  # load the real module, then stand in for it
        rt.lambdas._modules[name] = types.SimpleNamespace(lambda_handler=lambda_handler)
        response = rt.client("lambda").invoke(FunctionName=name, Payload=json.dumps({}))
        payload = json.loads(response["Payload"].read())
        assert seen["remaining"] == [timeout * 1000, (timeout - 100) * 1000]
        assert seen["now"][0] == seen["now"][1] == seen["now"][2]
        assert "after_deadline" not in seen
        assert response.get("FunctionError") and payload["errorType"] == "Sandbox.Timedout"
        span = rt.timing.spans_of(name)[-1]
        assert span.end - span.start == pytest.approx(timeout)
        assert rt.timing.report()["lambda_timeouts"] == 1


def test_a_small_migration_completes_without_rollback_in_simulated_time():
    with _runtime(CASES["B"]) as rt:
        rt.fleet.seed_fleet(20)
        CASES["B"].configure_target_group(rt.client("elbv2"), rt.fleet.target_group_arn)
        request = {"approval": {"auto_approve": True}, "quality": {"target_group_arn": rt.fleet.target_group_arn}}
        result = rt.run_migration(request, timeout=600)
        item = rt.migration(result.migration_id)
        report = rt.timing.report()
        assert (result.status, item["status"]) == ("SUCCEEDED", "completed"), result.cause
        assert not item.get("rollback")
        candidates = sum(w["target_count"] for w in item["waves"])
        assert report["launched"] == candidates > 0
        bakes = sum(DEFAULT_BAKE_SECONDS)
        assert bakes <= report["simulated_seconds"] <= bakes + 3 * 3600
        assert report["lambda_gb_seconds"] > 0 and report["lambda_timeouts"] == 0
        waves = physical_bound(CASES["B"], [(w["target_count"], w["bake_seconds"]) for w in item["waves"]])
        assert report["simulated_seconds"] >= waves["waves_seconds"] - 3 * 10  # the bound's boot is the mean
        # the same handlers, from functions/<name>/app.py, as without the simulator
        for module in rt.lambdas._modules.values():
            assert Path(module.__file__).resolve().is_relative_to(REPO / "functions")


def test_no_handler_code_knows_about_the_simulator():
    sources = [*REPO.glob("functions/*/app.py"), *REPO.glob("layers/spot_core/python/spot_core/**/*.py")]
    assert sources
    pattern = re.compile(r"^\s*(from|import) spotctl|spotctl\.local|VirtualClock|TimingSimulator|TimingModel",
                         re.MULTILINE)
    knows = [str(p.relative_to(REPO)) for p in sources if pattern.search(p.read_text())]
    assert knows == []


def test_the_cases_and_the_28_combinations():
    assert {c: (m.health_seconds, m.deregistration_delay) for c, m in CASES.items()} == {
        "A": (60, 0), "B": (120, 30), "C": (150, 300)}
    combos = combinations()
    assert len(combos) == 28 == len({m.name for m in combos})
    assert sorted({m.health_seconds for m in combos}) == list(range(60, 181, 20))
    assert sorted({m.deregistration_delay for m in combos}) == [0, 30, 120, 300]


def test_the_physical_bound_refills_the_launch_bucket_during_bakes():
    model = TimingModel(health_check_interval=30, healthy_threshold=2, deregistration_delay=0)
    per_wave = 1.0 + 35.0 + 60 + 0 + 0.3
    one = physical_bound(model, [(1000, 0.0)])
    assert one["waves_seconds"] == pytest.approx(per_wave, abs=0.1)  # the burst launches all at once
    two = physical_bound(model, [(1000, 0.0), (1000, 0.0)])
    assert two["waves"][1]["last_launch_s"] == pytest.approx(500, abs=0.1)  # 1000 tokens at 2 a second
    baked = physical_bound(model, [(1000, 500.0), (1000, 0.0)])
    assert baked["waves"][1]["last_launch_s"] == baked["waves"][1]["starts_s"]  # refilled during the bake


def test_calls_a_handler_makes_on_a_thread_pool_take_their_share_of_time_not_their_sum():
    """Eight threads making 80 calls of 0.15 s: about 10 calls' time, not 80 (and each call still
    goes through EC2's bucket: the pool cannot launch more than EC2 allows)."""
    from concurrent.futures import ThreadPoolExecutor

    with _runtime(TimingModel(latencies=(("ec2.DescribeInstanceAttribute", 0.15),))) as rt:
        ec2 = rt.client("ec2")
        _prepare(rt)
        instance = _launch(rt, ec2)[0]["InstanceId"]
        with rt.timing.simulating():
            start = rt.timing.seconds()
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda _: ec2.describe_instance_attribute(InstanceId=instance, Attribute="userData"),
                              range(80)))
            took = rt.timing.seconds() - start  # the time the handler sees once its pool is done
        assert 10 * 0.15 - 1e-6 <= took < 80 * 0.15 / 2
        assert rt.timing.report()["api_calls"]["ec2.DescribeInstanceAttribute"] == 80
