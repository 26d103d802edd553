"""Carrying the whole instance: what an instance is (disks, addresses, launch settings), which
way it moves (its mode), and what the plan says will be carried, changed, or cannot be.

- **stateless**: make-before-break. The replacement is launched with every launch setting of
  the original, its root volume's size, type, IOPS, throughput and encryption included (from
  the image: what was written on the original's root since launch is not carried, which is
  what a golden-image fleet wants). An Elastic IP on the primary address moves to the
  replacement once it is healthy (and back on rollback). An instance with data volumes,
  secondary interfaces or an address on a secondary IP cannot move this way.
- **stateful**: the instance's own volumes, interfaces and address move to a Spot instance in
  the same AZ, in a maintenance step with a short downtime.
- **auto**: stateless when behind a health-checked target group with nothing to move but
  itself; stateful otherwise, when the request allows downtime; else excluded, with why.

The request's `mode` applies to every instance; the tag `spot-migration:mode` overrides it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .health import PROBE_TAG, HealthProbe, probe_of
from .hooks import InterruptionHooks

Mode = Literal["stateless", "stateful"]
RequestedMode = Literal["auto", "stateless", "stateful"]
MODES: tuple[RequestedMode, ...] = ("auto", "stateless", "stateful")
MODE_TAG = "spot-migration:mode"
Exclusion = tuple[str, str]  # (reason code, detail)

# The maintenance step of a stateful move, as the plan announces it (seconds): stop the
# original, move each volume and interface (detach + attach), start the Spot instance with
# them, pass the status checks. Typical EC2 timings; the report measures the real ones.
STOP_SECONDS, MOVE_SECONDS_EACH, START_SECONDS, CHECK_SECONDS = 60, 15, 60, 60


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class VolumeSettings(Frozen):
    """What a block device mapping sets of a volume: a replacement's root takes its original's."""

    device: str
    size_gib: int
    volume_type: str
    iops: int | None = None
    throughput: int | None = None
    encrypted: bool = False
    kms_key_id: str | None = None
    delete_on_termination: bool = False


class Volume(VolumeSettings):
    """An attached EBS volume, as DescribeVolumes and the instance's block device mapping say."""

    volume_id: str
    multi_attach: bool = False
    root: bool = False

    @property
    def settings(self) -> VolumeSettings:
        return VolumeSettings.model_validate(self.model_dump(include=set(VolumeSettings.model_fields)))

    def describe(self) -> str:
        perf = "".join([f", {self.iops} IOPS" if self.iops else "",
                        f", {self.throughput} MiB/s" if self.throughput else ""])
        key = f"encrypted ({self.kms_key_id.rsplit('/', 1)[-1]})" if self.encrypted and self.kms_key_id else \
            "encrypted" if self.encrypted else "unencrypted"
        return f"{self.device} {self.size_gib} GiB {self.volume_type}{perf}, {key}"


class Interface(Frozen):
    """A network interface attached to the instance."""

    interface_id: str
    device_index: int
    private_ips: tuple[str, ...] = ()  # the primary first
    public_ip: str | None = None  # on the primary private IP: an Elastic IP or one EC2 assigned
    delete_on_termination: bool = True
    attachment_id: str | None = None

    @property
    def primary_ip(self) -> str | None:
        return self.private_ips[0] if self.private_ips else None


class ElasticIp(Frozen):
    allocation_id: str
    public_ip: str
    private_ip: str | None = None
    interface_id: str | None = None


class Inventory(Frozen):
    """Everything about an instance that a move must carry or account for."""

    volumes: tuple[Volume, ...] = ()
    interfaces: tuple[Interface, ...] = ()
    addresses: tuple[ElasticIp, ...] = ()
    hibernation: bool = False
    source_dest_check: bool = True
    cpu_credits: str | None = None  # burstable types: "standard" | "unlimited"

    @property
    def root(self) -> Volume | None:
        return next((v for v in self.volumes if v.root), None)

    @property
    def data_volumes(self) -> tuple[Volume, ...]:
        return tuple(v for v in self.volumes if not v.root)

    @property
    def primary(self) -> Interface | None:
        return next((i for i in self.interfaces if i.device_index == 0), None)

    @property
    def secondary_interfaces(self) -> tuple[Interface, ...]:
        return tuple(i for i in self.interfaces if i.device_index != 0)

    def addresses_off_primary_ip(self) -> tuple[ElasticIp, ...]:
        """Elastic IPs on any address but the primary private IP of the primary interface."""
        primary = self.primary
        return tuple(a for a in self.addresses
                     if primary is None or a.interface_id != primary.interface_id or a.private_ip != primary.primary_ip)

    @property
    def volume_sizes(self) -> tuple[tuple[str, int], ...]:
        """(type, GiB) of every volume: what a stopped original still costs."""
        return tuple((v.volume_type, v.size_gib) for v in self.volumes)


class CarryPlan(BaseModel):
    """What the plan shows per instance: the mode, and what moves, changes, or stays."""

    mode: Mode
    carried: list[str] = Field(default_factory=list)
    changed: list[str] = Field(default_factory=list)
    downtime_seconds: int = 0  # announced for a stateful move; 0 for make-before-break
    elastic_ips: list[ElasticIp] = Field(default_factory=list)  # what moves with the instance
    probe: HealthProbe | None = None
    source_dest_check: bool = True  # off (a NAT or router instance): set off on the replacement too
    hooks: InterruptionHooks | None = None  # what runs when EC2 takes its replacement back (None: replace)


def requested_mode(tags: Mapping[str, str], default: RequestedMode) -> RequestedMode | Exclusion:
    """The instance's tag wins over the request; a tag that names no mode is an exclusion."""
    value = tags.get(MODE_TAG, "").strip().lower()
    if not value:
        return default
    for mode in MODES:
        if value == mode:
            return mode
    return "invalid_mode_tag", f"{MODE_TAG}={tags[MODE_TAG]!r} is not one of {', '.join(MODES)}"


def stateless_blockers(inventory: Inventory) -> list[str]:
    """What a make-before-break replacement cannot take over (it starts from the image)."""
    blockers = [f"data volume {v.device} ({v.volume_id}, {v.size_gib} GiB)" for v in inventory.data_volumes]
    blockers += [f"secondary interface {i.interface_id}" for i in inventory.secondary_interfaces]
    blockers += [f"Elastic IP {a.public_ip} on secondary address {a.private_ip}"
                 for a in inventory.addresses_off_primary_ip()]
    return blockers


def stateful_blockers(inventory: Inventory) -> list[str]:
    blockers = [f"volume {v.volume_id} is multi-attach (another instance may use it)"
                for v in inventory.volumes if v.multi_attach]
    if inventory.root is None:
        blockers.append("no EBS root volume to move")
    return blockers


def choose_mode(requested: RequestedMode, inventory: Inventory, *, load_balanced: bool,
                probe: HealthProbe | None, allow_downtime: bool) -> Mode | Exclusion:
    """The mode one instance moves in, or why it cannot move (see the module docstring)."""
    blocked = stateless_blockers(inventory)
    if requested == "stateless":
        return _stateless(blocked, load_balanced or probe is not None)
    if requested == "auto" and load_balanced and not blocked and not inventory.hibernation:
        return "stateless"
    if requested == "auto" and not allow_downtime:
        why = _stateful_why(inventory, blocked, load_balanced)
        return "needs_downtime", f"moves only with its disks ({why}): needs allow_downtime or {MODE_TAG}"
    hard = stateful_blockers(inventory)
    return ("cannot_be_stateful", "; ".join(hard)) if hard else "stateful"


def _stateless(blocked: list[str], health_signal: bool) -> Mode | Exclusion:
    if blocked:
        return "cannot_be_stateless", "stateless mode cannot carry: " + "; ".join(blocked)
    if not health_signal:
        return "no_health_signal", ("stateless mode needs a health signal: a target group or a health "
                                    f"probe (request health_probe or tag {PROBE_TAG})")
    return "stateless"



def _stateful_why(inventory: Inventory, blocked: list[str], load_balanced: bool) -> str:
    reasons = list(blocked)
    if inventory.hibernation:
        reasons.append("hibernation configured")
    if not load_balanced:
        reasons.append("in no target group")
    return "; ".join(reasons) or "stateful requested"


def downtime_seconds(inventory: Inventory) -> int:
    """The announced downtime of a stateful move: stop, move each piece, start, checks."""
    pieces = len(inventory.volumes) + len(inventory.secondary_interfaces) + len(inventory.addresses)
    return STOP_SECONDS + MOVE_SECONDS_EACH * pieces + START_SECONDS + CHECK_SECONDS


def carry_plan(mode: Mode, inventory: Inventory, settings_note: list[str],
               probe: HealthProbe | None) -> CarryPlan:
    """What moves, what changes; `settings_note` lists the launch settings copied."""
    moved_ips = list(inventory.addresses) if mode == "stateful" else \
        [a for a in inventory.addresses if a not in inventory.addresses_off_primary_ip()]
    carried = [*settings_note, *(f"Elastic IP {a.public_ip}" for a in moved_ips)]
    changed = ["instance id", *_new_addresses(inventory)]
    if mode == "stateless":
        carried_more, changed_more = _fresh_root(inventory)
        return CarryPlan(mode=mode, carried=carried + carried_more, changed=changed + changed_more,
                         elastic_ips=moved_ips, probe=probe, source_dest_check=inventory.source_dest_check)
    carried += [f"volume {v.volume_id}: {v.describe()}" for v in inventory.volumes]
    carried += [f"interface {i.interface_id} (device {i.device_index}: {', '.join(i.private_ips)})"
                for i in inventory.secondary_interfaces]
    return CarryPlan(mode=mode, carried=carried, changed=changed, downtime_seconds=downtime_seconds(inventory),
                     elastic_ips=moved_ips, probe=probe, source_dest_check=inventory.source_dest_check)


def _new_addresses(inventory: Inventory) -> list[str]:
    """The primary interface's addresses a new instance does not keep: its private IP, and a
    public IP EC2 assigned (an Elastic IP moves)."""
    primary = inventory.primary
    if primary is None:
        return []
    changed = [f"primary private IP (was {primary.primary_ip})"] if primary.primary_ip else []
    if primary.public_ip and primary.public_ip not in {a.public_ip for a in inventory.addresses}:
        changed.append(f"public IP (was {primary.public_ip}, assigned by EC2)")
    return changed


def _fresh_root(inventory: Inventory) -> tuple[list[str], list[str]]:
    """A stateless replacement's root volume: the original's settings, the image's content."""
    carried, changed = [], []
    if inventory.root:
        carried.append(f"root volume settings: {inventory.root.describe()}")
        changed.append("root volume content: fresh from the image (nothing written since launch is carried)")
    if not inventory.source_dest_check:
        carried.append("source/destination check off")
    return carried, changed


def probe_for(tags: Mapping[str, str], default: HealthProbe | None) -> HealthProbe | None | Exclusion:
    try:
        return probe_of(tags, default)
    except ValueError as exc:
        return "invalid_probe_tag", f"health probe tag: {exc}"
