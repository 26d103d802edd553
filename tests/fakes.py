"""In-memory fakes of the ports (spot_core/ports.py), on a virtual clock.

One World holds them all: EC2 instances that boot, stop and start as virtual time passes,
target groups whose targets become healthy or drain, the repositories (which store copies,
as DynamoDB does: a record changed but not put is not stored), and a log of every change
in order. `world.crash_on("fleet.stop")` makes the next such call raise Crash, the way a
Lambda invocation dies; the services are then run again, as the state machine's retry would.
`world.observers` are called after every logged change (to measure capacity at every moment).
"""

from __future__ import annotations

import copy
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel

from spot_core.domain.asg import GroupConfig, GroupFacts, GroupRecord, LaunchSource
from spot_core.domain.carry import Interface, Inventory, Volume
from spot_core.domain.clock import Budget
from spot_core.domain.errors import (
    ApprovalNotPending,
    CapacityRefused,
    EventInProgress,
    InvalidMigrationRequest,
    LaunchRefused,
    LaunchThrottled,
    MigrationNotFound,
    ProbeRefused,
    StartRefused,
    TransientAwsError,
)
from spot_core.domain.fallbacks import is_fallback
from spot_core.domain.health import HealthProbe, ProbeResult, StatusChecks
from spot_core.domain.hooks import Checkpoint, HookResult
from spot_core.domain.instances import CAPACITY_ERRORS, LIVE_STATES, Instance, LaunchSettings, LaunchSpec, TypeTraits
from spot_core.domain.interruptions import UNCLAIMED
from spot_core.domain.locks import InstanceLock
from spot_core.domain.outcomes import DRIFT_FALLBACKS, DRIFT_MONTHLY_SPOT
from spot_core.domain.plan import AgentVerdict, InstanceRecord, TargetGroups, TargetRef, unfinished
from spot_core.domain.pricing import LINUX, SpotPriceStat
from spot_core.domain.quality import QualitySample
from spot_core.domain.refresh import Refresh
from spot_core.domain.request import MetricQuery, Selector
from spot_core.domain.spot_options import is_persistent
from spot_core.domain.stateful import InterfaceAt, VolumeAt
from spot_core.domain.tags import LAUNCH_BATCH_TAG, MANAGED_TAG, MIGRATION_ID_TAG, REPLACES_TAG, SUCCEEDS_TAG

M = TypeVar("M", bound=BaseModel)
START = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class Crash(Exception):
    """An injected failure: the invocation dies at this call."""


# --- time ----------------------------------------------------------------------------------------
class FakeClock:
    def __init__(self, start: datetime = START):
        self.start, self.elapsed = start, 0.0

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return self.elapsed

    def sleep(self, seconds: float) -> None:
        self.elapsed += seconds

    def budget(self, seconds: float = 900.0) -> Budget:
        return Budget(clock=self, end=self.elapsed + seconds)


# --- the world: what every fake shares -------------------------------------------------------------
@dataclass
class World:
    clock: FakeClock = field(default_factory=FakeClock)
    log: list[tuple[str, Any]] = field(default_factory=list)  # every change, in order
    crashes: dict[str, int] = field(default_factory=dict)  # operation -> calls left before it crashes
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # called as observer(operation, detail) right after each change is logged, to measure the world at every
    # moment of the log (e.g. the targets serving after each deregistration or stop)
    observers: list[Callable[[str, Any], None]] = field(default_factory=list)

    def crash_on(self, operation: str, after: int = 0) -> None:
        """The call of `operation` after `after` successful ones raises Crash (once)."""
        self.crashes[operation] = after

    def enter(self, operation: str) -> None:
        self.calls[operation] += 1
        left = self.crashes.get(operation)
        if left is not None:
            if left == 0:
                del self.crashes[operation]
                raise Crash(operation)
            self.crashes[operation] = left - 1

    def record(self, operation: str, detail: Any) -> None:
        self.log.append((operation, detail))
        for observer in self.observers:
            observer(operation, detail)

    def changes(self, operation: str) -> list[Any]:
        return [d for op, d in self.log if op == operation]


# --- EC2 ---------------------------------------------------------------------------------------------
def default_inventory(instance_id: str) -> Inventory:
    return Inventory(volumes=(Volume(volume_id=f"vol-{instance_id[2:]}", device="/dev/xvda", size_gib=8,
                                     volume_type="gp3", delete_on_termination=True, root=True),))


class Everyone(set[str]):
    """A set every instance id is in (a fault for the whole fleet)."""

    def __contains__(self, item: object) -> bool:
        return True


class FakeProbes:
    """SSM Run Command probes (and interruption checkpoints): each answers `pending` for
    `pending_passes` reads, then succeeds, unless its instance is in `failing` (failed, exit 1),
    `hanging` (pending for ever) or `refusing` (ProbeRefused at send); `unreachable`: SSM itself
    fails every call."""

    def __init__(self, world: World, pending_passes: int = 1):
        self.world, self.pending_passes = world, pending_passes
        self.sent: list[tuple[str, HealthProbe]] = []
        self.checkpoints: list[tuple[str, Checkpoint]] = []
        self.failing: set[str] = set()
        self.hanging: set[str] = set()
        self.refusing: set[str] = set()
        self.unreachable = False
        self._reads: dict[str, int] = {}

    def send_checkpoint(self, instance_id: str, checkpoint: Checkpoint) -> str:
        self.world.enter("probes.send_checkpoint")
        if self.unreachable:
            raise TransientAwsError("ServiceUnavailable: SSM is unreachable")
        if instance_id in self.refusing:
            raise ProbeRefused(f"{instance_id} is not an SSM managed instance")
        self.checkpoints.append((instance_id, checkpoint))
        self.world.record("checkpoint", instance_id)
        return f"checkpoint-{len(self.checkpoints)}"

    def send(self, instance_id: str, probe: HealthProbe) -> str:
        self.world.enter("probes.send")
        if instance_id in self.refusing:
            raise ProbeRefused(f"{instance_id} is not an SSM managed instance")
        self.sent.append((instance_id, probe))
        self.world.record("probe", instance_id)
        return f"cmd-{len(self.sent)}"

    def results(self, commands: Mapping[str, str]) -> dict[str, ProbeResult]:
        self.world.enter("probes.results")
        if self.unreachable:
            raise TransientAwsError("ServiceUnavailable: SSM is unreachable")
        found: dict[str, ProbeResult] = {}
        for instance_id, command in commands.items():
            self._reads[command] = self._reads.get(command, 0) + 1
            if self._reads[command] <= self.pending_passes or instance_id in self.hanging:
                found[instance_id] = ProbeResult(state="pending")
            elif instance_id in self.failing:
                found[instance_id] = ProbeResult(state="failed", detail="Failed (exit 1)", exit_code=1)
            else:
                found[instance_id] = ProbeResult(state="success", exit_code=0)
        return found


class FakeWebhooks:
    """Interruption webhooks: `secrets` maps a reference to the URL its secret holds (a missing one:
    not found); `answers` maps a URL to the HTTP status its receiver answers (200 unless said), or
    "timeout" (no answer: the call takes its whole timeout). Every call is in `calls`."""

    def __init__(self, world: World):
        self.world = world
        self.secrets: dict[str, str] = {}
        self.answers: dict[str, int | str] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []  # (URL, payload)

    def call(self, reference: str, payload: Mapping[str, Any], timeout_seconds: float) -> HookResult:
        self.world.enter("webhooks.call")
        url = self.secrets.get(reference)
        if url is None:
            return HookResult(hook="webhook", status="failed", detail="secret not found (ResourceNotFoundException)")
        self.calls.append((url, copy.deepcopy(dict(payload))))
        self.world.record("webhook", payload["instance"]["id"])
        answer = self.answers.get(url, 200)
        if answer == "timeout":
            self.world.clock.sleep(timeout_seconds)
            return HookResult(hook="webhook", status="timed_out", detail=f"no answer within {timeout_seconds:g} s")
        status = "succeeded" if 200 <= int(answer) < 300 else "failed"
        return HookResult(hook="webhook", status=status, detail=f"HTTP {answer}")


@dataclass
class _Ec2Instance:
    instance: Instance
    since: float  # when the current transition started (virtual seconds)
    token: str | None = None


class FakeFleet:
    """EC2: instances boot in `boot_seconds`, stop in `stop_seconds`; launches are idempotent by
    client token; pools can refuse launches (CapacityRefused) or refuse anything (LaunchRefused),
    everywhere (`refuse_everything`) or in one subnet (`refused_subnets`, e.g. no free address)."""

    def __init__(self, world: World, boot_seconds: float = 30, stop_seconds: float = 20):
        self.world, self.boot_seconds, self.stop_seconds = world, boot_seconds, stop_seconds
        self._instances: dict[str, _Ec2Instance] = {}
        self._ids = (f"i-{n:017x}" for n in itertools.count(0xabc000))
        self.subnets: dict[str, tuple[str, str]] = {}  # subnet id -> (vpc, zone)
        self.user_datas: dict[str, str] = {}
        self.refusals: dict[tuple[str, str], str] = {}  # (type, zone) -> capacity error code
        self.on_demand_refusals: dict[tuple[str, str], str] = {}  # the same for on-demand launches
        self.refuse_everything: str | None = None  # a LaunchRefused for every launch
        self.refused_subnets: dict[str, str] = {}  # subnet id -> error code of a LaunchRefused for launches there
        self.never_boots: set[str] = set()  # instance types whose instances stay pending
        self.inventories: dict[str, Inventory] = {}  # instance id -> what it carries (default: an 8 GiB gp3 root)
        self.addresses: dict[str, str] = {}  # Elastic IP allocation id -> the instance it points at
        self.status_check_seconds: float = 0  # a running instance's status checks initialise this long
        self.impaired: set[str] = set()  # instance ids whose instance status check fails
        self.source_dest_checks: dict[str, bool] = {}
        # where each volume and interface is (stateful moves detach and attach them)
        self.volume_at: dict[str, VolumeAt] = {}
        self.volume_info: dict[str, Volume] = {}
        self.interface_at: dict[str, InterfaceAt] = {}
        self.deleted_volumes: list[str] = []
        self.snapshots: dict[str, tuple[float, dict[str, str]]] = {}  # id -> (taken at, tags)
        self.snapshot_seconds = 300.0
        self.start_refusals: dict[str, str] = {}  # instance id -> error code StartInstances answers for it
        self.traits: dict[str, TypeTraits] = {}
        self.capacity: dict[tuple[str, str], int] = {}  # (type, zone) -> instances a pool still has (default: plenty)
        self.launch_bucket: tuple[float, float] | None = None  # (burst, per second): RunInstances' resource bucket
        self._bucket: tuple[float, float] | None = None  # (tokens, at)

    # --- building the fleet ------------------------------------------------------------------------
    def add_subnet(self, subnet_id: str, zone: str, vpc: str = "vpc-1") -> None:
        self.subnets[subnet_id] = (vpc, zone)

    def add(self, instance_type: str = "m5.large", zone: str = "us-east-1a", tags: Mapping[str, str] | None = None,
            lifecycle: str | None = None, state: str = "running", user_data: str | None = None,
            settings: LaunchSettings | None = None, image_id: str = "ami-12345678",
            product: str | None = None) -> Instance:
        """`product`: the billing product EC2 reports (PlatformDetails; Linux/UNIX when None)."""
        subnet = next((s for s, (_, z) in self.subnets.items() if z == zone), None)
        if subnet is None:
            subnet = f"subnet-{zone[-2:]}"
            self.add_subnet(subnet, zone)
        instance = Instance(
            instance_id=next(self._ids), instance_type=instance_type, availability_zone=zone, state=state,
            subnet_id=subnet, vpc_id=self.subnets[subnet][0], image_id=image_id, lifecycle=lifecycle,
            tags=dict(tags or {}), launch_time=self.world.clock.now(),
            settings=settings or LaunchSettings(security_group_ids=("sg-1",), key_name="ops", ebs_optimized=True),
            product=product,
        )
        self._instances[instance.instance_id] = _Ec2Instance(instance, self.world.clock.monotonic())
        if user_data:
            self.user_datas[instance.instance_id] = user_data
        return instance

    def set_tags(self, instance_id: str, **tags: str) -> None:
        """Change an instance's tags (CreateTags, as its owner would), by tag name: ``**{OPT_IN_TAG: "false"}``."""
        entry = self._instances[instance_id]
        entry.instance = replace(entry.instance, tags={**entry.instance.tags, **tags})

    # --- what time does to instances ------------------------------------------------------------------
    def _current(self, entry: _Ec2Instance) -> Instance:
        elapsed = self.world.clock.monotonic() - entry.since
        instance = entry.instance
        if instance.state == "pending" and elapsed >= self.boot_seconds \
                and instance.instance_type not in self.never_boots:
            entry.instance, entry.since = replace(instance, state="running"), entry.since + self.boot_seconds
        elif instance.state == "stopping" and elapsed >= self.stop_seconds:
            entry.instance, entry.since = replace(instance, state="stopped"), entry.since + self.stop_seconds
        elif instance.state == "shutting-down" and elapsed >= self.stop_seconds:
            entry.instance = replace(instance, state="terminated")
        return entry.instance

    def state(self, instance_id: str) -> str:
        return self._current(self._instances[instance_id]).state

    def instance(self, instance_id: str) -> Instance:
        return self._current(self._instances[instance_id])

    def all(self) -> list[Instance]:
        return [self._current(e) for e in self._instances.values()]

    def live(self) -> list[Instance]:
        return [i for i in self.all() if i.state in ("pending", "running")]

    def _set_state(self, instance_id: str, state: str, reason: str | None = None) -> None:
        """`reason`: EC2's StateReason code of the change (an API stop or terminate: Client.UserInitiatedShutdown)."""
        entry = self._instances[instance_id]
        entry.instance = replace(self._current(entry), state=state, state_reason=reason)
        entry.since = self.world.clock.monotonic()

    def reclaim(self, instance_id: str, stop: bool = False) -> None:
        """EC2 takes a Spot instance back (terminates it, or stops it for a persistent request)."""
        if stop:
            self._set_state(instance_id, "stopping", "Server.SpotInstanceShutdown")
        else:
            self._set_state(instance_id, "shutting-down", "Server.SpotInstanceTermination")
        self.world.record("reclaim", instance_id)

    # --- the port ---------------------------------------------------------------------------------------
    def find(self, selector: Selector) -> list[Instance]:
        self.world.enter("fleet.find")
        live = [i for i in self.all() if i.state not in ("shutting-down", "terminated")]
        if selector.instance_ids:
            return [i for i in live if i.instance_id in selector.instance_ids]
        return [i for i in live if all(i.tags.get(k) == v for k, v in selector.tags.items())]

    def describe(self, instance_ids: Iterable[str]) -> dict[str, Instance]:
        self.world.enter("fleet.describe")
        return {i: self._current(self._instances[i]) for i in set(instance_ids) if i in self._instances}

    def type_traits(self, instance_types: Iterable[str]) -> dict[str, TypeTraits]:
        return {t: self.traits.get(t, TypeTraits(burstable=t.startswith("t"))) for t in set(instance_types)}

    def find_replacements(self, migration_id: str, original_ids: list[str]) -> dict[str, Instance]:
        self.world.enter("fleet.find_replacements")
        return {i.tags[REPLACES_TAG]: i for i in self.live()
                if i.tags.get(MIGRATION_ID_TAG) == migration_id and i.tags.get(REPLACES_TAG) in original_ids}

    def inventory(self, instances: list[Instance]) -> dict[str, Inventory]:
        """`inventories`, with the volumes and interfaces attached to it now; an instance not set
        has an 8 GiB gp3 root volume and nothing else."""
        self.world.enter("fleet.inventory")
        return {i.instance_id: self._inventory(i.instance_id) for i in instances if i.instance_id in self._instances}

    def _inventory(self, instance_id: str) -> Inventory:
        inventory = self.inventories.get(instance_id) or default_inventory(instance_id)
        attached = [v for v, at in self.volume_at.items() if at.instance_id == instance_id]
        if not attached and instance_id not in self.inventories:
            return inventory
        volumes = tuple(self.volume_info[v].model_copy(update={"device": self.volume_at[v].device}) for v in attached)
        moved = {i for i, at in self.interface_at.items() if at.instance_id != instance_id}
        return inventory.model_copy(update={"volumes": volumes, "interfaces": tuple(
            i for i in inventory.interfaces if i.interface_id not in moved)})

    def set_inventory(self, instance_id: str, inventory: Inventory) -> None:
        """What an instance carries: its volumes and interfaces attached to it, its Elastic IPs
        pointing at it."""
        self.inventories[instance_id] = inventory
        self.addresses.update({a.allocation_id: instance_id for a in inventory.addresses})
        entry = self._instances[instance_id]
        primary = tuple(i for i in inventory.interfaces if i.device_index == 0)
        entry.instance = replace(entry.instance, interfaces=primary)
        for volume in inventory.volumes:
            self.volume_info[volume.volume_id] = volume
            self.volume_at[volume.volume_id] = VolumeAt("in-use", instance_id, volume.device, "attached")
        for eni in inventory.secondary_interfaces:
            self.interface_at[eni.interface_id] = InterfaceAt("in-use", instance_id, eni.device_index,
                                                              f"attach-{eni.interface_id}")

    # --- the pieces of a stateful move (EC2's rules: detach and attach only while stopped) --------------
    def pieces(self, volume_ids: list[str], interface_ids: list[str]
               ) -> tuple[dict[str, VolumeAt], dict[str, InterfaceAt]]:
        self.world.enter("fleet.pieces")
        return ({v: self.volume_at[v] for v in volume_ids if v in self.volume_at},
                {i: self.interface_at[i] for i in interface_ids if i in self.interface_at})

    def attach_volume(self, volume_id: str, instance_id: str, device: str) -> None:
        self.world.enter("fleet.attach_volume")
        assert self.volume_at[volume_id].state == "available", f"{volume_id} is in use"
        assert self.state(instance_id) == "stopped", f"attaching to {instance_id}, which is {self.state(instance_id)}"
        assert not any(at.instance_id == instance_id and at.device == device for at in self.volume_at.values()), \
            f"{device} of {instance_id} is taken"
        self.volume_at[volume_id] = VolumeAt("in-use", instance_id, device, "attached")
        self.world.record("attach_volume", (volume_id, instance_id, device))

    def detach_volume(self, volume_id: str, instance_id: str) -> None:
        self.world.enter("fleet.detach_volume")
        assert self.state(instance_id) == "stopped", f"detaching from {instance_id}, which is {self.state(instance_id)}"
        assert self.volume_at[volume_id].instance_id == instance_id
        self.volume_at[volume_id] = VolumeAt("available")
        self.world.record("detach_volume", (volume_id, instance_id))

    def attach_interface(self, interface_id: str, instance_id: str, device_index: int) -> None:
        self.world.enter("fleet.attach_interface")
        assert self.interface_at[interface_id].status == "available"
        self.interface_at[interface_id] = InterfaceAt("in-use", instance_id, device_index, f"attach-{interface_id}")
        self.world.record("attach_interface", (interface_id, instance_id, device_index))

    def detach_interface(self, attachment_id: str) -> None:
        self.world.enter("fleet.detach_interface")
        interface_id = next(i for i, at in self.interface_at.items() if at.attachment_id == attachment_id)
        assert self.state(self.interface_at[interface_id].instance_id or "") == "stopped"
        self.interface_at[interface_id] = InterfaceAt("available")
        self.world.record("detach_interface", interface_id)

    def delete_volumes(self, volume_ids: list[str]) -> None:
        self.world.enter("fleet.delete_volumes")
        for volume_id in volume_ids:
            if volume_id in self.volume_at:
                assert self.volume_at[volume_id].state == "available", f"deleting {volume_id}, which is in use"
                del self.volume_at[volume_id]
                self.deleted_volumes.append(volume_id)

    def tag_all(self, instance_ids: list[str], tags: Mapping[str, str]) -> None:
        self.world.enter("fleet.tag_all")
        for instance_id in instance_ids:
            self.set_tags(instance_id, **tags)

    def untag_all(self, instance_ids: list[str], keys: list[str]) -> None:
        self.world.enter("fleet.untag_all")
        for instance_id in instance_ids:
            entry = self._instances[instance_id]
            entry.instance = replace(entry.instance, tags={k: v for k, v in entry.instance.tags.items()
                                                           if k not in keys})

    def snapshot_instance(self, instance_id: str, tags: Mapping[str, str]) -> tuple[list[str], int]:
        """One snapshot per volume attached (pending for `snapshot_seconds`, then completed)."""
        self.world.enter("fleet.snapshot_instance")
        volumes = self._inventory(instance_id).volumes
        taken = [s for s, (_, own) in self.snapshots.items() if own == dict(tags)]
        if taken:  # EC2 answers the ones already taken (found by their tags)
            return taken, sum(v.size_gib for v in volumes)
        ids = [f"snap-{v.volume_id[4:]}" for v in volumes]
        self.snapshots.update({s: (self.world.clock.monotonic(), dict(tags)) for s in ids})
        self.world.record("snapshot", instance_id)
        return ids, sum(v.size_gib for v in volumes)

    def snapshot_states(self, snapshot_ids: list[str]) -> dict[str, str]:
        self.world.enter("fleet.snapshot_states")
        now = self.world.clock.monotonic()
        return {s: ("completed" if now - self.snapshots[s][0] >= self.snapshot_seconds else "pending")
                for s in snapshot_ids if s in self.snapshots}

    def set_user_data(self, instance_id: str, user_data: str) -> None:
        self.world.enter("fleet.set_user_data")
        assert self.state(instance_id) == "stopped"
        self.user_datas[instance_id] = user_data

    def _rootless(self, instance_id: str) -> bool:
        """An instance whose volumes are tracked and none of them is at its root device."""
        tracked = instance_id in self.inventories or any(at.instance_id == instance_id
                                                        for at in self.volume_at.values())
        return tracked and not any(at.instance_id == instance_id and at.device in ("/dev/xvda", "/dev/sda1")
                                   for at in self.volume_at.values())

    def status_checks(self, instance_ids: list[str]) -> dict[str, StatusChecks]:
        """Running instances: initializing for `status_check_seconds` after they run, then ok
        (the instance check impaired for `impaired` ids)."""
        self.world.enter("fleet.status_checks")
        found: dict[str, StatusChecks] = {}
        for instance_id in instance_ids:
            entry = self._instances.get(instance_id)
            if entry is None or self._current(entry).state != "running":
                continue
            if instance_id in self.impaired:
                found[instance_id] = StatusChecks(instance="impaired", system="ok")
            elif self.world.clock.monotonic() - entry.since < self.status_check_seconds:
                found[instance_id] = StatusChecks()
            else:
                found[instance_id] = StatusChecks(instance="ok", system="ok")
        return found

    def associate_address(self, allocation_id: str, instance_id: str, interface_id: str | None = None,
                          private_ip: str | None = None) -> None:
        """EC2's rule: an instance with several interfaces takes an address only by interface."""
        self.world.enter("fleet.associate_address")
        several = sum(1 for at in self.interface_at.values() if at.instance_id == instance_id) > 0
        assert interface_id or not several, f"{instance_id} has several interfaces: name one"
        self.addresses[allocation_id] = instance_id
        self.world.record("associate_address", (allocation_id, instance_id))

    def set_source_dest_check(self, instance_id: str, enabled: bool) -> None:
        self.world.enter("fleet.set_source_dest_check")
        self.source_dest_checks[instance_id] = enabled

    def live_replacements(self) -> list[Instance]:
        return [i for i in self.live() if REPLACES_TAG in i.tags]

    def launched_for(self, migration_id: str) -> list[Instance]:
        self.world.enter("fleet.launched_for")
        return [i for i in self.all() if i.state in LIVE_STATES and i.tags.get(MIGRATION_ID_TAG) == migration_id]

    def find_successors(self, instance_ids: list[str]) -> dict[str, Instance]:
        self.world.enter("fleet.find_successors")
        found: dict[str, Instance] = {}
        for i in self.live():  # in launch order: the earliest of several
            if i.tags.get(SUCCEEDS_TAG) in instance_ids:
                found.setdefault(i.tags[SUCCEEDS_TAG], i)
        return found

    def managed(self) -> list[Instance]:
        return [i for i in self.live() if i.tags.get(MANAGED_TAG) == "true"]

    def fallbacks(self) -> list[Instance]:
        self.world.enter("fleet.fallbacks")
        return [i for i in self.live() if is_fallback(i)]

    def user_data(self, instance_id: str) -> str | None:
        return self.user_datas.get(instance_id)

    def subnets_by_zone(self, vpc_id: str) -> dict[str, str]:
        zones: dict[str, str] = {}
        for subnet, (vpc, zone) in sorted(self.subnets.items()):
            if vpc == vpc_id:
                zones.setdefault(zone, subnet)
        return zones

    def launch(self, spec: LaunchSpec, client_token: str) -> str:
        self.world.enter("fleet.launch")
        for entry in self._instances.values():
            if entry.token == client_token:
                return entry.instance.instance_id  # EC2's idempotency: the same token, the same instance
        return self._launch_one(spec, client_token, 0)

    def launch_many(self, spec: LaunchSpec, count: int, client_token: str) -> list[str]:
        """Up to `count` instances in one call (as many as the pool's `capacity` allows); throttled
        when `launch_bucket` is set and has fewer tokens than `count`."""
        self.world.enter("fleet.launch_many")
        again = [e.instance for e in self._instances.values() if e.token == client_token]
        if again:  # EC2's idempotency: the same token, the same instances
            return [i.instance_id for i in sorted(again, key=lambda i: i.launch_index)]
        self._take_tokens(count)
        zone = self.subnets[spec.subnet_id][1]
        room = self.capacity.get((spec.instance_type, zone), count) if spec.market == "spot" else count
        if room < 1:
            raise CapacityRefused("InsufficientInstanceCapacity", f"no capacity left for {spec.instance_type}")
        ids = [self._launch_one(spec, client_token, index) for index in range(min(count, room))]
        if (spec.instance_type, zone) in self.capacity:
            self.capacity[(spec.instance_type, zone)] -= len(ids)
        return ids

    def _take_tokens(self, count: int) -> None:
        if self.launch_bucket is None:
            return
        burst, rate = self.launch_bucket
        tokens, at = self._bucket or (burst, self.world.clock.monotonic())
        tokens = min(burst, tokens + (self.world.clock.monotonic() - at) * rate)
        if tokens < count:
            self._bucket = (tokens, self.world.clock.monotonic())
            self.world.record("throttled", count)
            raise LaunchThrottled("RequestLimitExceeded")
        self._bucket = (tokens - count, self.world.clock.monotonic())

    def _launch_one(self, spec: LaunchSpec, client_token: str, index: int) -> str:
        """One instance of a launch (the checks of `launch`, then the instance, pending)."""
        zone = self.subnets[spec.subnet_id][1]
        if self.refuse_everything:
            raise LaunchRefused(f"{self.refuse_everything}: refused")
        if spec.subnet_id in self.refused_subnets:
            raise LaunchRefused(f"{self.refused_subnets[spec.subnet_id]}: refused in {spec.subnet_id}")
        refusals = self.refusals if spec.market == "spot" else self.on_demand_refusals
        code = refusals.get((spec.instance_type, zone))
        if code:
            raise CapacityRefused(code, f"no capacity for {spec.instance_type} in {zone}")
        instance = Instance(
            instance_id=next(self._ids), instance_type=spec.instance_type, availability_zone=zone, state="pending",
            subnet_id=spec.subnet_id, vpc_id=self.subnets[spec.subnet_id][0], image_id=spec.image_id,
            lifecycle="spot" if spec.market == "spot" else None, tags=dict(spec.tags),
            launch_time=self.world.clock.now(), settings=spec.settings, launch_index=index,
        )
        primary = Interface(interface_id=f"eni-{instance.instance_id[2:]}", device_index=0,
                            private_ips=(f"10.0.{index}.99",))
        instance = replace(instance, interfaces=(primary,))
        self._instances[instance.instance_id] = _Ec2Instance(instance, self.world.clock.monotonic(), client_token)
        if is_persistent(spec.interruption_behavior):  # tracked: its own root volume, which a stateful move swaps out
            own = f"vol-own-{instance.instance_id[2:]}"
            self.volume_info[own] = Volume(volume_id=own, device="/dev/xvda", size_gib=8, volume_type="gp3", root=True)
            self.volume_at[own] = VolumeAt("in-use", instance.instance_id, "/dev/xvda", "attached")
        if spec.user_data:
            self.user_datas[instance.instance_id] = spec.user_data
        self.world.record("launch", {"instance_id": instance.instance_id, "spec": spec})
        return instance.instance_id

    def launched_in_batch(self, migration_id: str, batch: str) -> list[Instance]:
        self.world.enter("fleet.launched_in_batch")
        return sorted((i for i in self.live() if i.tags.get(MIGRATION_ID_TAG) == migration_id
                       and i.tags.get(LAUNCH_BATCH_TAG) == batch), key=lambda i: i.launch_index)

    def tag_each(self, tags: Mapping[str, Mapping[str, str]]) -> None:
        for instance_id, own in tags.items():
            self.world.enter("fleet.tag")
            self.set_tags(instance_id, **own)
            self.world.record("tag", (instance_id, dict(own)))

    def user_data_of(self, instance_ids: list[str]) -> dict[str, str | None]:
        return {i: self.user_datas.get(i) for i in instance_ids}

    def start(self, instance_ids: list[str]) -> dict[str, CapacityRefused | StartRefused]:
        """`start_refusals` (instance id -> error code) are refused: capacity codes as CapacityRefused."""
        self.world.enter("fleet.start")
        refused: dict[str, CapacityRefused | StartRefused] = {}
        for instance_id in instance_ids:
            code = self.start_refusals.get(instance_id)
            if code:
                refused[instance_id] = (CapacityRefused(code, "refused") if code in CAPACITY_ERRORS
                                        else StartRefused(f"{code}: refused"))
            elif self.state(instance_id) == "stopped" and self._rootless(instance_id):
                refused[instance_id] = StartRefused("InvalidParameterValue: no root volume attached")
            elif self.state(instance_id) == "stopped":
                self._set_state(instance_id, "pending")
                self.world.record("start", instance_id)
        return refused

    def stop(self, instance_ids: list[str]) -> None:
        self.world.enter("fleet.stop")
        for instance_id in instance_ids:
            if self.state(instance_id) in ("pending", "running"):
                self._set_state(instance_id, "stopping", "Client.UserInitiatedShutdown")
                self.world.record("stop", instance_id)

    def cancel_spot_requests(self, instance_ids: list[str]) -> None:
        self.world.enter("fleet.cancel_spot_requests")
        for instance_id in instance_ids:
            self.world.record("cancel_spot_request", instance_id)

    def terminate(self, instance_ids: list[str]) -> None:
        self.world.enter("fleet.terminate")
        for instance_id in instance_ids:
            if instance_id in self._instances and self.state(instance_id) not in ("shutting-down", "terminated"):
                self._set_state(instance_id, "shutting-down", "Client.UserInitiatedShutdown")
                self.world.record("terminate", instance_id)


# --- ELBv2 -----------------------------------------------------------------------------------------
class FakeLoadBalancer:
    """Target groups: a registered target is healthy `health_seconds` after registration once its
    instance runs (never, for instances in `unhealthy` or of a type in `unhealthy_types`); a
    deregistered one drains for `drain_seconds`. `add_target` sets up a target serving already."""

    def __init__(self, world: World, fleet: FakeFleet, health_seconds: float = 15, drain_seconds: float = 10):
        self.world, self.fleet = world, fleet
        self.health_seconds, self.drain_seconds = health_seconds, drain_seconds
        self.groups: dict[str, dict[str, tuple[str, float, int | None]]] = {}  # arn -> id -> (phase, since, port)
        self.balancers: dict[str, str] = {}  # target group arn -> load balancer arn
        self.unhealthy: set[str] = set()
        self.unhealthy_types: set[str] = set()  # instance types the application fails its health checks on

    def add_group(self, arn: str, balancer: str | None = None) -> None:
        self.groups.setdefault(arn, {})
        if balancer:
            self.balancers[arn] = balancer

    def add_target(self, arn: str, instance_id: str, port: int | None = None) -> None:
        """A target registered before the test starts (healthy now, if its instance runs); not logged."""
        self.add_group(arn)
        self.groups[arn][instance_id] = ("registered", self.world.clock.monotonic() - self.health_seconds, port)

    def _state(self, arn: str, instance_id: str) -> str:
        phase, since, _ = self.groups.get(arn, {}).get(instance_id, ("unused", 0.0, None))
        elapsed = self.world.clock.monotonic() - since
        if phase == "draining":
            return "draining" if elapsed < self.drain_seconds else "unused"
        if phase != "registered":
            return "unused"
        if instance_id in self.unhealthy or self.fleet.state(instance_id) != "running" \
                or self.fleet.instance(instance_id).instance_type in self.unhealthy_types:
            return "unhealthy" if elapsed >= self.health_seconds else "initial"
        return "healthy" if elapsed >= self.health_seconds else "initial"

    def serving(self, arn: str) -> set[str]:
        return {i for i in self.groups.get(arn, {}) if self._state(arn, i) == "healthy"}

    def draining(self, arn: str) -> set[str]:
        return {i for i in self.groups.get(arn, {}) if self._state(arn, i) == "draining"}

    def registered(self, arn: str) -> set[str]:
        return {i for i in self.groups.get(arn, {}) if self._state(arn, i) not in ("unused", "draining")}

    def membership(self) -> dict[str, list[TargetRef]]:
        out: dict[str, list[TargetRef]] = defaultdict(list)
        for arn, targets in self.groups.items():
            for instance_id, (_, _, port) in targets.items():
                if self._state(arn, instance_id) not in ("unused", "draining"):
                    out[instance_id].append(TargetRef(arn=arn, port=port))
        return dict(out)

    def target_groups_of(self, instance_id: str) -> list[TargetRef]:
        return self.membership().get(instance_id, [])

    def load_balancer_of(self, target_group_arn: str) -> str | None:
        return self.balancers.get(target_group_arn)

    def register_if_running(self, groups: TargetGroups) -> bool:
        """Like moto's, this load balancer takes instances that are still booting (refuse_booting: like ELB's)."""
        if getattr(self, "refuse_booting", False) and any(
                self.fleet.state(t.instance_id) != "running" for targets in groups.values() for t in targets):
            self.world.enter("lb.register")
            return False
        self.register(groups)
        return True

    def register(self, groups: TargetGroups) -> None:
        self.world.enter("lb.register")
        for arn, targets in groups.items():
            for target in targets:
                if self._state(arn, target.instance_id) in ("unused", "draining"):
                    self.groups.setdefault(arn, {})[target.instance_id] = (
                        "registered", self.world.clock.monotonic(), target.port)
                    self.world.record("register", (arn, target.instance_id))

    def deregister(self, groups: TargetGroups) -> None:
        self.world.enter("lb.deregister")
        for arn, targets in groups.items():
            for target in targets:
                if self._state(arn, target.instance_id) not in ("unused", "draining"):
                    port = self.groups[arn][target.instance_id][2]
                    self.groups[arn][target.instance_id] = ("draining", self.world.clock.monotonic(), port)
                    self.world.record("deregister", (arn, target.instance_id))

    def deregistration_delays(self, target_group_arns: Iterable[str]) -> dict[str, int]:
        return {arn: int(self.drain_seconds) for arn in target_group_arns}

    def target_states(self, groups: TargetGroups) -> dict[tuple[str, str], str]:
        self.world.enter("lb.target_states")
        return {(arn, t.instance_id): self._state(arn, t.instance_id) for arn, targets in groups.items()
                for t in targets}


# --- prices, metrics, notifications -------------------------------------------------------------------
class FakeSpotPrices:
    def __init__(self, prices: Mapping[tuple[str, str], float] | None = None):
        self.prices = dict(prices or {})
        self.calls = 0
        self.licence_fees: dict[str, float] = {}  # billing product -> its hourly licence fee

    def statistics(self, instance_types: Iterable[str], now: datetime, lookback_hours: float = 24,
                   product: str = LINUX) -> dict[tuple[str, str], SpotPriceStat]:
        """`prices` are Linux/UNIX's; a licensed product's add its `licence_fees` (per hour)."""
        self.calls += 1
        types, fee = set(instance_types), self.licence_fees.get(product, 0.0)
        return {k: SpotPriceStat(k[0], k[1], median=v + fee, p90=v + fee, maximum=v + fee, samples=1)
                for k, v in self.prices.items() if k[0] in types}


class FakeOnDemandPrices:
    def __init__(self, prices: Mapping[str, float] | None = None):
        self.table = dict(prices or {})
        self.licence_fees: dict[str, float] = {}  # billing product -> its hourly licence fee

    @property
    def source_used(self) -> str:
        return "catalog"

    def prices(self, instance_types: Iterable[str], strict: bool = True, product: str = LINUX) -> dict[str, float]:
        """`table` is Linux/UNIX's; a licensed product's adds its `licence_fees` (per hour)."""
        if product != LINUX and product not in self.licence_fees:
            return {}
        fee = self.licence_fees.get(product, 0.0)
        return {t: self.table[t] + fee for t in set(instance_types) if t in self.table}


class FakeMetrics:
    def __init__(self) -> None:
        self.cpu: dict[str, list[float]] = {}
        self.sample = QualitySample(latency=0.1, error_rate=0.001, requests=6000, datapoints=60)
        self.firing: list[str] = []

    def cpu_utilisation(self, instance_ids: list[str], end: datetime) -> dict[str, list[float]]:
        return {i: list(self.cpu.get(i, [])) for i in instance_ids}

    def quality_sample(self, metrics: Mapping[str, MetricQuery], start: datetime, end: datetime) -> QualitySample:
        return self.sample if metrics else QualitySample()

    def alarms_in_alarm(self, names: list[str]) -> list[str]:
        return [n for n in names if n in self.firing]


class FakeNotifier:
    def __init__(self, world: World):
        self.world = world
        self.sent: list[dict[str, Any]] = []

    def publish(self, subject_id: str, event: str, headline: str, lines: list[str], data: Mapping[str, Any]) -> None:
        self.world.enter("notifier.publish")
        self.sent.append({"subject_id": subject_id, "event": event, "headline": headline, "lines": lines,
                          "data": copy.deepcopy(dict(data))})


# --- repositories: copies in, copies out, as DynamoDB -----------------------------------------------------
class FakeMigrations:
    def __init__(self, world: World):
        self.world = world
        self.items: dict[str, dict[str, Any]] = {}

    def create(self, migration_id: str, request: dict[str, Any], status: str = "analysing") -> None:
        existing = self.items.get(migration_id)
        if existing and not (existing["status"] in ("analysing", "planned") and existing["request"] == request):
            raise InvalidMigrationRequest(f"migration id {migration_id!r} was already used")
        self.items[migration_id] = {"migration_id": migration_id, "status": status,
                                    "request": copy.deepcopy(request)}

    def get(self, migration_id: str) -> dict[str, Any]:
        if migration_id not in self.items:
            raise MigrationNotFound(f"no migration {migration_id!r}")
        return copy.deepcopy(self.items[migration_id])

    def update(self, migration_id: str, **fields: Any) -> None:
        self.world.enter("migrations.update")
        if migration_id not in self.items:
            raise MigrationNotFound(f"no migration {migration_id!r}")
        self.items[migration_id].update(copy.deepcopy(fields))

    def set_wave_result(self, migration_id: str, wave: int, key: str, result: dict[str, Any]) -> None:
        results = self.get(migration_id).get("wave_results") or {}
        results.setdefault(str(wave), {})[key] = result
        self.update(migration_id, wave_results=results)

    def page(self, limit: int, start_key: dict[str, Any] | None = None,
             status: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        items = [copy.deepcopy(i) for i in self.items.values() if status is None or i["status"] == status]
        return items[:limit], None

    def get_many(self, migration_ids: list[str], consistent: bool = False) -> dict[str, dict[str, Any]]:
        return {m: copy.deepcopy(self.items[m]) for m in migration_ids if m in self.items}


class FakePlans:
    def __init__(self, world: World):
        self.world = world
        self.migrations: FakeMigrations | None = None  # linked by ports(): a drift is on the migration item
        self.group_items: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.stored: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.verdict_items: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)

    def put_records(self, migration_id: str, records: Iterable[InstanceRecord]) -> int:
        """A batch write: every record or (a crash) none."""
        self.world.enter("plans.put_records")
        count = 0
        for record in records:
            self.stored[migration_id][record.instance_id] = record.model_dump()
            count += 1
        return count

    def put_record(self, migration_id: str, record: InstanceRecord) -> None:
        self.world.enter("plans.put_record")
        self.stored[migration_id][record.instance_id] = record.model_dump()
        self.world.record("record", (record.instance_id, record.status))

    def put_record_drifting(self, migration_id: str, record: InstanceRecord, monthly_spot: float,
                            fallbacks: int) -> None:
        """The record and the migration's drift, at once (one transaction)."""
        self.world.enter("plans.put_record_drifting")
        self.stored[migration_id][record.instance_id] = record.model_dump()
        migration = self.migrations.items[migration_id] if self.migrations else {}
        migration[DRIFT_MONTHLY_SPOT] = migration.get(DRIFT_MONTHLY_SPOT, 0) + monthly_spot
        migration[DRIFT_FALLBACKS] = migration.get(DRIFT_FALLBACKS, 0) + fallbacks
        self.world.record("record", (record.instance_id, record.status))

    def records(self, migration_id: str) -> list[InstanceRecord]:
        return [InstanceRecord.model_validate(r) for _, r in sorted(self.stored[migration_id].items())]

    def in_flight(self, migration_id: str, wave: int) -> list[InstanceRecord]:
        return [r for r in self.records(migration_id) if r.eligible and r.wave == wave and unfinished(r)]

    def record(self, migration_id: str, instance_id: str) -> InstanceRecord:
        return InstanceRecord.model_validate(self.stored[migration_id][instance_id])

    def records_by_key(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], InstanceRecord | None]:
        """By key, as one batched read."""
        self.world.enter("plans.records_by_key")
        return {(mid, iid): InstanceRecord.model_validate(self.stored[mid][iid]) if iid in self.stored[mid] else None
                for mid, iid in keys}

    def records_page(self, migration_id: str, limit: int,
                     start_key: dict[str, Any] | None = None) -> tuple[list[InstanceRecord], dict[str, Any] | None]:
        return self.records(migration_id)[:limit], None

    def put_verdict(self, migration_id: str, verdict: AgentVerdict) -> None:
        self.verdict_items[migration_id][verdict.agent] = verdict.model_dump()

    def put_groups(self, migration_id: str, groups: Iterable[GroupRecord]) -> None:
        self.world.enter("plans.put_groups")
        for group in groups:
            self.group_items[migration_id][group.name] = group.model_dump()

    def put_group(self, migration_id: str, group: GroupRecord) -> None:
        self.world.enter("plans.put_group")
        self.group_items[migration_id][group.name] = group.model_dump()
        self.world.record("group", (group.name, group.status))

    def groups(self, migration_id: str) -> list[GroupRecord]:
        return [GroupRecord.model_validate(g) for _, g in sorted(self.group_items[migration_id].items())]

    def verdicts(self, migration_id: str) -> list[AgentVerdict]:
        return [AgentVerdict.model_validate(v) for v in self.verdict_items[migration_id].values()]


class FakeTokens:
    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}

    def put(self, migration_id: str, token: str, expires_at: int) -> None:
        self.tokens[migration_id] = token

    def take(self, migration_id: str) -> str:
        if migration_id not in self.tokens:
            raise ApprovalNotPending(f"migration {migration_id!r} is not waiting for a decision")
        return self.tokens.pop(migration_id)


class FakePoolMemory:
    def __init__(self) -> None:
        self.interrupted: list[tuple[str, str, str]] = []

    def record_interruption(self, instance_type: str, availability_zone: str, instance_id: str) -> None:
        self.interrupted.append((instance_type, availability_zone, instance_id))

    def recent_interruptions(self) -> set[tuple[str, str]]:
        return {(t, z) for t, z, _ in self.interrupted}


class FakeClaims:
    """One claim per instance, as the conditional writes of the DynamoDB adapter keep them
    (claimed_at in whole seconds of the virtual clock)."""

    def __init__(self, world: World):
        self.world = world
        self.items: dict[str, dict[str, Any]] = {}
        self.linked: dict[str, Any] = {}  # registry, pool_memory, plans, migrations (ports() links them)

    def claim(self, instance_id: str, event_id: str, **fields: Any) -> bool:
        self.world.enter("claims.claim")
        if instance_id in self.items:
            return False
        self.items[instance_id] = {**copy.deepcopy(fields), "instance_id": instance_id, "status": "launching",
                                   "event_id": event_id, "claimed_at": int(self.world.clock.now().timestamp())}
        return True

    def claim_or_get(self, instance_id: str, event_id: str, **fields: Any) -> tuple[bool, dict[str, Any]]:
        """The conditional write that returns the launch profile it found, or the claim it was refused by."""
        self.world.enter("claims.claim")
        found = self.get(instance_id)
        if found is not None:
            return False, found
        self.items[instance_id] = {**self.items.get(instance_id, {}), **copy.deepcopy(fields),
                                   "instance_id": instance_id, "status": "launching", "event_id": event_id,
                                   "claimed_at": int(self.world.clock.now().timestamp())}
        return True, copy.deepcopy(self.items[instance_id])

    def put_profile(self, instance_id: str, profile: Any) -> None:
        """A launch profile, where the instance is not claimed yet."""
        if instance_id not in self.items:
            self.items[instance_id] = {"instance_id": instance_id, "status": UNCLAIMED,
                                       "profile": profile.model_dump(exclude_none=True)}

    def get(self, instance_id: str) -> dict[str, Any] | None:
        item = self.items.get(instance_id)
        return copy.deepcopy(item) if item and item.get("status") != UNCLAIMED else None

    def get_many(self, instance_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return {i: item for i in instance_ids if (item := self.get(i)) is not None}

    def take_over(self, instance_id: str, held: Mapping[str, Any], event_id: str, **fields: Any) -> bool:
        self.world.enter("claims.take_over")
        item = self.items.get(instance_id)
        if item is None or item.get("status") not in ("launching", "launched") \
                or (item.get("event_id"), item.get("claimed_at")) != (held.get("event_id"), held.get("claimed_at")):
            return False
        item.update(event_id=event_id, claimed_at=int(self.world.clock.now().timestamp()), **copy.deepcopy(fields))
        return True

    def abandon(self, instance_id: str, event_id: str) -> None:
        item = self.items.get(instance_id)
        if item is not None and item.get("event_id") == event_id and item.get("status") in ("launching", "launched"):
            item["in_progress_expiration"] = 0

    # The writes the DynamoDB adapter makes as one transaction: the registry, pool memory, plan and
    # migrations they also write are the fakes ports() links (linked=).
    def record_launch(self, instance_id: str, owner: str, interrupted_pool: tuple[str, str] | None = None,
                      profile: Any = None, **fields: Any) -> None:
        self.world.enter("claims.update")
        self.items.setdefault(instance_id, {"instance_id": instance_id}).update(copy.deepcopy(fields))
        self.linked["registry"].register(fields["replacement_id"], owner)
        if profile is not None:
            self.put_profile(fields["replacement_id"], profile)
        if interrupted_pool:
            self.linked["pool_memory"].record_interruption(*interrupted_pool, instance_id)

    def finish(self, instance_id: str, follow: Any = None, interrupted_pool: tuple[str, str] | None = None,
               **fields: Any) -> bool:
        self.world.enter("claims.update")
        self.items.setdefault(instance_id, {"instance_id": instance_id}).update(copy.deepcopy(fields))
        if interrupted_pool:
            self.linked["pool_memory"].record_interruption(*interrupted_pool, instance_id)
        return follow is not None and self._follow(follow)

    def _follow(self, follow: Any) -> bool:
        stored = self.linked["plans"].stored[follow.migration_id].get(follow.original_id)
        if stored is None or stored.get("replacement_id") != follow.interrupted_id:
            return False
        stored.update(copy.deepcopy(follow.fields))
        stored["attempts"] = [*stored.get("attempts", []), follow.note]
        migration = self.linked["migrations"].items.get(follow.migration_id)
        if migration is not None:
            migration[DRIFT_MONTHLY_SPOT] = migration.get(DRIFT_MONTHLY_SPOT, 0) + follow.monthly_spot
            migration[DRIFT_FALLBACKS] = migration.get(DRIFT_FALLBACKS, 0) + follow.fallbacks
        return True

    def release(self, instance_id: str) -> None:
        item = self.items.get(instance_id, {})
        if item.get("status") == "launching":
            del self.items[instance_id]
            if item.get("profile") is not None:
                self.items[instance_id] = {"instance_id": instance_id, "status": UNCLAIMED,
                                           "profile": item["profile"]}

    def replacement_for(self, instance_id: str) -> dict[str, Any] | None:
        item = self.items.get(instance_id)
        return copy.deepcopy(item) if item and item.get("replacement_id") else None

    def update(self, instance_id: str, **fields: Any) -> None:
        self.world.enter("claims.update")
        self.items.setdefault(instance_id, {"instance_id": instance_id}).update(copy.deepcopy(fields))

    def all(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(i) for i in self.items.values() if i.get("status") != UNCLAIMED]


class FakeRegistry:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, str]] = {}
        self.claims: Any = None  # where launch profiles go (ports() links it)

    def register(self, instance_id: str, owner: str, status: str = "active") -> None:
        self.items[instance_id] = {"owner": owner, "status": status}

    def register_all(self, instance_ids: list[str], owner: str, profiles: Mapping[str, Any] | None = None) -> None:
        for instance_id in instance_ids:
            self.register(instance_id, owner)
        for instance_id, profile in (profiles or {}).items():
            if self.claims is not None:
                self.claims.put_profile(instance_id, profile)

    def statuses(self, instance_ids: list[str]) -> dict[str, str]:
        return {i: self.items[i]["status"] for i in instance_ids if i in self.items}


class FakeEventOnce:
    """Each event id is handled once; a failed handling is forgotten, so the retry does it."""

    def __init__(self) -> None:
        self.done: dict[str, Any] = {}
        self.in_progress: set[str] = set()

    def run(self, event_id: str, work: Callable[[], M], on_duplicate: Callable[[], M]) -> M:
        if event_id in self.in_progress:
            raise EventInProgress(event_id)
        if event_id in self.done:
            return on_duplicate()
        self.in_progress.add(event_id)
        try:
            result = work()
        finally:
            self.in_progress.discard(event_id)
        self.done[event_id] = result
        return result


class FakeLocks:
    """Per-instance locks with DynamoDB's conditional-write semantics."""

    def __init__(self, world: World):
        self.world = world
        self.items: dict[str, InstanceLock] = {}

    def acquire(self, migration_id: str, instance_ids: list[str], now: datetime) -> dict[str, InstanceLock]:
        self.world.enter("locks.acquire")
        refused = {}
        for iid in instance_ids:
            lock = self.items.get(iid)
            if lock is not None and lock.refusal(migration_id, now):
                refused[iid] = lock.model_copy()
            else:
                self.items[iid] = InstanceLock(instance_id=iid, migration_id=migration_id)
        return refused

    def take_over(self, migration_id: str, instance_id: str, ended_holder: str, now: datetime) -> bool:
        lock = self.items.get(instance_id)
        if lock is None or lock.migration_id != ended_holder:
            return False
        self.items[instance_id] = InstanceLock(instance_id=instance_id, migration_id=migration_id)
        return True

    def locks(self, instance_ids: Iterable[str]) -> dict[str, InstanceLock]:
        return {i: self.items[i].model_copy() for i in instance_ids if i in self.items}

    def release(self, migration_id: str, cooldown_until: datetime | None = None, cooled: Iterable[str] = ()) -> int:
        self.world.enter("locks.release")
        cooled = set(cooled)
        held = [i for i, lock in self.items.items() if lock.migration_id == migration_id]
        for iid in held:
            if cooldown_until and iid in cooled:
                self.items[iid] = InstanceLock(instance_id=iid, cooldown_until=cooldown_until,
                                               cooldown_after=migration_id)
            else:
                del self.items[iid]
        return len(held)


class FakeAutoScaling:
    """Auto Scaling groups: a configuration, members (their markets, in launch order) and instance
    refreshes that end `refresh_seconds` after they start, the members then running what the
    configuration says (a mixed policy's share on Spot, else all on-demand). Faults: `failing`
    (groups whose refreshes fail), `skip_matching_keeps_markets` (a refresh that skips matching
    members replaces none of a listed type whatever its market, as EC2 Auto Scaling may)."""

    def __init__(self, world: World):
        self.world = world
        self.facts: dict[str, GroupFacts] = {}
        self.configuration: dict[str, dict[str, Any]] = {}
        self.group_tags: dict[str, dict[str, str]] = {}
        self.members: dict[str, list[str]] = {}  # name -> markets ("spot" | "on-demand")
        self.refreshes: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.launch_configuration_items: dict[str, dict[str, Any]] = {}
        self.templates: dict[str, str] = {}  # client token -> launch template id
        self.refresh_seconds, self.cancel_seconds = 300.0, 30.0
        self.failing: set[str] = set()
        self.skip_matching_keeps_markets = False

    def add(self, name: str, desired: int = 4, *, launch: str = "template", instance_type: str = "m5.large",
            zones: tuple[str, ...] = ("us-east-1a", "us-east-1b"), tags: Mapping[str, str] | None = None
            ) -> GroupFacts:
        template = {"LaunchTemplateId": f"lt-{name}", "Version": "$Default"}
        config = GroupConfig(launch_template=template if launch == "template" else None,
                             launch_configuration_name=f"{name}-lc" if launch != "template" else None)
        source = LaunchSource(kind="launch_template" if launch == "template" else "launch_configuration",
                              name=template["LaunchTemplateId"] if launch == "template" else f"{name}-lc",
                              instance_type=instance_type)
        if launch != "template":
            self.launch_configuration_items[f"{name}-lc"] = {"LaunchConfigurationName": f"{name}-lc",
                                                             "ImageId": "ami-1", "InstanceType": instance_type}
        self.facts[name] = GroupFacts(name=name, arn=f"arn:aws:autoscaling:::{name}", source=source, config=config,
                                      instance_types={instance_type: desired}, desired=desired, min_size=0,
                                      max_size=desired * 3, on_demand_count=desired, availability_zones=list(zones),
                                      tags=dict(tags or {}))
        self.configuration[name] = {k: v for k, v in (("LaunchTemplate", config.launch_template),
                                                      ("LaunchConfigurationName", config.launch_configuration_name))
                                    if v}
        self.members[name] = ["on-demand"] * desired
        return self.facts[name]

    def set_desired(self, name: str, desired: int) -> None:
        """A scaling policy changes the capacity: members launch (per the configuration) or go."""
        self.facts[name] = self.facts[name].model_copy(update={"desired": desired})
        markets = self.members[name]
        self.members[name] = markets[:desired] + self._markets(name, desired)[len(markets):]

    # --- the port ---------------------------------------------------------------------------------
    def find(self, names: Iterable[str] = (), tags: Mapping[str, str] | None = None) -> list[GroupFacts]:
        self.world.enter("autoscaling.find")
        names = list(names) or [n for n, f in self.facts.items()
                                if tags and all(f.tags.get(k) == v for k, v in tags.items())]
        return [self._now(n) for n in names if n in self.facts]

    def _now(self, name: str) -> GroupFacts:
        """The group's facts with its members' markets as they are now."""
        self._refreshes(name)
        markets = self.members[name]
        return self.facts[name].model_copy(update={"on_demand_count": markets.count("on-demand"),
                                                   "spot_count": markets.count("spot")})

    def launch_configurations(self, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        return {n: dict(self.launch_configuration_items[n]) for n in names if n in self.launch_configuration_items}

    def create_launch_template(self, configuration: Mapping[str, Any], name: str, tags: Mapping[str, str],
                               client_token: str) -> str:
        self.world.enter("autoscaling.create_launch_template")
        self.templates.setdefault(client_token, f"lt-made-{len(self.templates)}")
        self.world.record("create_launch_template", self.templates[client_token])
        return self.templates[client_token]

    def configure(self, name: str, **configuration: Any) -> None:
        self.world.enter("autoscaling.configure")
        kept = {k: v for k, v in self.configuration[name].items() if k == "CapacityRebalance"}
        self.configuration[name] = {**kept, **copy.deepcopy(configuration)}
        self.world.record("configure", (name, copy.deepcopy(configuration)))

    def tag(self, name: str, tags: Mapping[str, str], propagate: bool = True) -> None:
        self.world.enter("autoscaling.tag")
        self.group_tags.setdefault(name, {}).update(tags)

    def untag(self, name: str, keys: Iterable[str]) -> None:
        self.world.enter("autoscaling.untag")
        for key in keys:
            self.group_tags.get(name, {}).pop(key, None)

    def start_refresh(self, name: str, warmup_seconds: int, skip_matching: bool = True) -> str:
        self.world.enter("autoscaling.start_refresh")
        running = [r for r in self._refreshes(name) if r["status"] in ("Pending", "InProgress")]
        if running:
            return str(running[0]["id"])
        refresh = {"id": f"r-{name}-{len(self.refreshes[name])}", "status": "InProgress", "skip": skip_matching,
                   "at": self.world.clock.monotonic()}
        self.refreshes[name].append(refresh)
        self.world.record("start_refresh", (name, skip_matching))
        return str(refresh["id"])

    def refresh(self, name: str, refresh_id: str) -> Refresh | None:
        found = [r for r in self._refreshes(name) if r["id"] == refresh_id]
        return Refresh(refresh_id=refresh_id, status=found[0]["status"]) if found else None

    def cancel_refresh(self, name: str) -> bool:
        self.world.enter("autoscaling.cancel_refresh")
        running = [r for r in self._refreshes(name) if r["status"] == "InProgress"]
        for r in running:
            r.update(status="Cancelling", at=self.world.clock.monotonic())
        return bool(running)

    def spot_share(self, name: str) -> tuple[int, int]:
        self._refreshes(name)
        return self.members[name].count("spot"), len(self.members[name])

    # --- what time does to refreshes ------------------------------------------------------------
    def _refreshes(self, name: str) -> list[dict[str, Any]]:
        now = self.world.clock.monotonic()
        for r in self.refreshes[name]:
            if r["status"] == "Cancelling" and now - r["at"] >= self.cancel_seconds:
                r["status"] = "Cancelled"
            elif r["status"] == "InProgress" and now - r["at"] >= self.refresh_seconds:
                r["status"] = "Failed" if name in self.failing else "Successful"
                if r["status"] == "Successful" and not (r["skip"] and self.skip_matching_keeps_markets):
                    self.members[name] = self._markets(name, self.facts[name].desired)
        return self.refreshes[name]

    def _markets(self, name: str, desired: int) -> list[str]:
        """The members' markets the configuration asks for (the on-demand ones first)."""
        distribution = (self.configuration[name].get("MixedInstancesPolicy") or {}).get("InstancesDistribution")
        if not distribution:
            return ["on-demand"] * desired
        base = min(distribution["OnDemandBaseCapacity"], desired)
        above = desired - base
        on_demand = base - (-above * distribution["OnDemandPercentageAboveBaseCapacity"] // 100)
        return ["on-demand"] * on_demand + ["spot"] * (desired - on_demand)


class FakeExecutionStarter:
    """Executions of one state machine, by name: a name starts once."""

    def __init__(self) -> None:
        self.started: dict[str, str] = {}

    def start(self, name: str, execution_input: str) -> dict[str, Any] | None:
        if name in self.started:
            return None
        self.started[name] = execution_input
        return {"executionArn": f"arn:aws:states:us-east-1:123456789012:execution:rehome:{name}"}


# --- everything together ----------------------------------------------------------------------------------
@dataclass
class Ports:
    world: World
    fleet: FakeFleet
    load_balancer: FakeLoadBalancer
    spot_prices: FakeSpotPrices
    on_demand: FakeOnDemandPrices
    metrics: FakeMetrics
    notifier: FakeNotifier
    migrations: FakeMigrations
    plans: FakePlans
    tokens: FakeTokens
    pool_memory: FakePoolMemory
    claims: FakeClaims
    registry: FakeRegistry
    once: FakeEventOnce
    locks: FakeLocks
    probes: FakeProbes
    rehomes: FakeExecutionStarter = field(default_factory=FakeExecutionStarter)
    autoscaling: FakeAutoScaling | None = None  # set by ports()
    webhooks: FakeWebhooks | None = None  # set by ports()

    @property
    def clock(self) -> FakeClock:
        return self.world.clock


def ports(**fleet_timing: float) -> Ports:
    world = World()
    fleet = FakeFleet(world, **{k: v for k, v in fleet_timing.items() if k in ("boot_seconds", "stop_seconds")})
    lb = FakeLoadBalancer(world, fleet, **{k: v for k, v in fleet_timing.items()
                                           if k in ("health_seconds", "drain_seconds")})
    made = Ports(world, fleet, lb, FakeSpotPrices(), FakeOnDemandPrices(), FakeMetrics(), FakeNotifier(world),
                 FakeMigrations(world), FakePlans(world), FakeTokens(), FakePoolMemory(), FakeClaims(world),
                 FakeRegistry(), FakeEventOnce(), FakeLocks(world), FakeProbes(world))
    made.registry.claims = made.claims
    made.plans.migrations = made.migrations
    made.autoscaling = FakeAutoScaling(world)
    made.webhooks = FakeWebhooks(world)
    made.claims.linked.update(registry=made.registry, pool_memory=made.pool_memory, plans=made.plans,
                              migrations=made.migrations)
    return made

