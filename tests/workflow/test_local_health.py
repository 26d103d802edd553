"""The embedded runtime's health simulator (spotctl/local/health.py): EC2 status checks that take
time to pass and can fail, and SSM probes that run, fail or time out, on the runtime's clock
(real time plus the fast-forwarded Waits, or the timing simulator's virtual clock). The
product's own adapters read them, as the handlers do."""

from __future__ import annotations

import pytest
from moto.ec2.models.instances import Instance
from moto.ssm.models import SimpleSystemManagerBackend

from spot_core.adapters.ec2 import Ec2Fleet
from spot_core.adapters.ssm import SsmProbes
from spot_core.domain.errors import ProbeRefused
from spot_core.domain.health import HealthProbe
from spotctl.local.runtime import LocalRuntime
from spotctl.local.timing import TimingModel

PROBE = HealthProbe(command="curl -fsS 'localhost:8080/health?token=s3cr3t'", timeout_seconds=30)


@pytest.fixture
def rt():
    with LocalRuntime(seed=3) as runtime:
        yield runtime


def launch(rt: LocalRuntime, instance_type: str = "m5.large") -> str:
    return rt.fleet.launch(instance_type, "web", "us-east-1a", register=False)[0]


def checks(rt: LocalRuntime, *ids: str) -> dict[str, tuple[str, str]]:
    return {i: (c.instance, c.system) for i, c in Ec2Fleet(rt.client("ec2")).status_checks(list(ids)).items()}


def probe(rt: LocalRuntime, instance: str, command: HealthProbe = PROBE) -> tuple[SsmProbes, dict[str, str]]:
    probes = SsmProbes(rt.client("ssm"))
    return probes, {instance: probes.send(instance, command)}


def states(probes: SsmProbes, commands: dict[str, str]) -> dict[str, tuple[str, str]]:
    return {i: (r.state, r.detail) for i, r in probes.results(commands).items()}


# --- status checks ---------------------------------------------------------------------------------
def test_status_checks_initialize_for_a_minute_of_the_runtimes_time_then_pass(rt):
    instance = launch(rt)
    assert checks(rt, instance) == {instance: ("initializing", "initializing")}
    rt.advance(50)
    assert checks(rt, instance) == {instance: ("initializing", "initializing")}
    rt.advance(11)
    assert checks(rt, instance) == {instance: ("ok", "ok")}


def test_a_started_instance_initializes_again_and_a_stopped_one_has_no_checks(rt):
    instance = launch(rt)
    rt.advance(61)
    ec2 = rt.client("ec2")
    ec2.stop_instances(InstanceIds=[instance])
    assert checks(rt, instance) == {}  # DescribeInstanceStatus lists running instances only
    ec2.start_instances(InstanceIds=[instance])
    assert checks(rt, instance) == {instance: ("initializing", "initializing")}
    rt.advance(61)
    assert checks(rt, instance) == {instance: ("ok", "ok")}


def test_impaired_by_type_for_instances_launched_afterwards_and_by_id(rt):
    before = launch(rt, "c5.large")
    rt.health.impair(instance_type="c5.large")
    after, other = launch(rt, "c5.large"), launch(rt, "m5.large")
    rt.health.impair(instance_ids=[other], check="system")
    assert checks(rt, after)[after] == ("initializing", "initializing")  # EC2 fails a check once it ran
    rt.advance(61)
    assert checks(rt, before, after, other) == {
        before: ("ok", "ok"), after: ("impaired", "ok"), other: ("ok", "impaired")}


def test_the_check_time_is_configurable(rt):
    rt.health.status_check_seconds = 5
    instance = launch(rt)
    rt.advance(6)
    assert checks(rt, instance) == {instance: ("ok", "ok")}


# --- probes ----------------------------------------------------------------------------------------
def test_a_probe_is_in_progress_then_succeeds_and_every_command_is_recorded(rt):
    instance = launch(rt)
    probes, commands = probe(rt, instance)
    assert states(probes, commands) == {instance: ("pending", "")}
    rt.advance(5)
    assert states(probes, commands) == {instance: ("success", "")}
    [sent] = rt.health.commands
    assert (sent.instance_id, sent.instance_type, sent.document, sent.command, sent.command_id) == (
        instance, "m5.large", "AWS-RunShellScript", PROBE.command, commands[instance])
    assert sent.execution_timeout == 30 and sent.outcome == "success"
    assert "s3cr3t" not in repr(sent)  # the runtime never prints the command


def test_a_failing_probe_fails_with_exit_code_1_and_others_still_pass(rt):
    failing, passing = launch(rt, "c5.large"), launch(rt, "m5.large")
    rt.health.fail_probes(instance_type="c5.large", command_contains="/health")
    probes = SsmProbes(rt.client("ssm"))
    commands = {i: probes.send(i, PROBE) for i in (failing, passing)}
    other = {failing: probes.send(failing, HealthProbe(command="systemctl is-active web"))}
    rt.advance(5)
    assert states(probes, commands) == {failing: ("failed", "Failed (exit 1)"), passing: ("success", "")}
    assert states(probes, other) == {failing: ("success", "")}


def test_a_timed_out_probe_is_in_progress_until_its_execution_timeout(rt):
    instance = launch(rt)
    rt.health.time_out_probes(instance_ids=[instance])
    probes, commands = probe(rt, instance)
    rt.advance(29)
    assert states(probes, commands) == {instance: ("pending", "")}
    rt.advance(2)
    assert states(probes, commands) == {instance: ("failed", "TimedOut: ExecutionTimedOut")}


@pytest.mark.parametrize("action", ["stop_instances", "terminate_instances"])
def test_a_probe_on_an_instance_that_is_not_running_is_refused(rt, action):
    instance = launch(rt)
    getattr(rt.client("ec2"), action)(InstanceIds=[instance])
    with pytest.raises(ProbeRefused, match="not an SSM managed instance"):
        probe(rt, instance)
    with pytest.raises(ProbeRefused):
        probe(rt, "i-0123456789abcdef0")  # no such instance
    assert rt.health.commands == []


def test_leaving_the_runtime_gives_moto_back_its_own_answers():
    originals = (vars(Instance)["instance_status"], vars(SimpleSystemManagerBackend)["send_command"])
    with LocalRuntime(seed=3):
        assert vars(Instance)["instance_status"] is not originals[0]
    assert (vars(Instance)["instance_status"], vars(SimpleSystemManagerBackend)["send_command"]) == originals


# --- timing mode: the virtual clock ------------------------------------------------------------------
def test_on_the_virtual_clock_checks_start_when_the_boot_ends_and_probes_take_virtual_time():
    model = TimingModel(boot_seconds=(30.0, 30.0), latencies=(("", 0.0),))
    with LocalRuntime(seed=3, timing=model) as rt:
        rt.fleet.setup_network()
        rt.fleet.image_id()
        with rt.timing.simulating():
            instance = launch(rt)
            rt.advance(31)  # running since 30 s
            assert checks(rt, instance) == {instance: ("initializing", "initializing")}
            rt.advance(58)  # 89 s: 59 s of running
            assert checks(rt, instance) == {instance: ("initializing", "initializing")}
            rt.advance(2)
            assert checks(rt, instance) == {instance: ("ok", "ok")}
            probes, commands = probe(rt, instance)
            assert states(probes, commands) == {instance: ("pending", "")}
            rt.timing.clock.advance(5)
            assert states(probes, commands) == {instance: ("success", "")}
        assert rt.health.commands[0].at == pytest.approx(91.0)
