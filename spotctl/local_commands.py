"""The commands that drive the local service itself: `spotctl local up|down|status|notifications`,
and `spotctl simulate-interruption|simulate-rebalance` (what EC2 would send on its own)."""

from __future__ import annotations

import argparse

from .exit_codes import EXIT_FAILED, EXIT_OK
from .output import output
from .request_flags import UsageError


def simulate(args: argparse.Namespace, kind: str) -> int:
    """EC2 sends a Spot interruption warning or a rebalance recommendation for an instance."""
    from spot_core.domain.request import INSTANCE_ID
    from spotctl.local import daemon

    if not INSTANCE_ID.match(args.instance_id):
        raise UsageError(f"{args.instance_id!r} is not an EC2 instance id")
    state = daemon.running() or daemon.start()
    request = {"instance_id": args.instance_id, "kind": kind, "reclaim": not args.keep}
    outcome = daemon.control(state, "/_local/ec2-events", request)
    lines = [f"{outcome['event']['detail-type']} for {args.instance_id} (event {outcome['event']['id']})"]
    if not outcome["rules"]:
        lines.append("  no rule matches it: nothing was invoked")
    lines += [_delivery_line(delivery) for delivery in outcome["deliveries"]]
    if outcome["reclaimed"]:
        lines.append(f"  EC2 reclaimed {args.instance_id} (terminated)")
    output(args, outcome, "\n".join(lines))
    return EXIT_FAILED if any("error" in d for d in outcome["deliveries"]) else EXIT_OK


def _delivery_line(delivery: dict) -> str:
    result = delivery.get("result") or {}
    return (f"  rule {delivery['rule']} -> replace_interrupted ({delivery['attempts']} attempt(s)): "
            f"{describe(result, delivery)}")


def describe(result: dict, delivery: dict) -> str:
    """What the replacement Lambda did with the event (or how it failed)."""
    if "error" in delivery:
        error = delivery["error"]
        return (f"FAILED ({error.get('errorType')}: {error.get('errorMessage')}); "
                "sent to the dead-letter queue")
    action = result.get("action")
    if action in ("replaced", "prewarmed"):
        text = (f"{action}: {result['replacement_id']} launched as {result['market']} {result['instance_type']} in "
                f"{result['availability_zone']}, {result['seconds_from_event_to_launch']:.2f} s after the event")
        if action == "replaced":
            return text + "; target groups swapped"
        return text + "; the original keeps serving until interrupted"
    if action == "swapped_prewarmed":
        return f"swapped to the prewarmed {result['replacement_id']} (no new launch)"
    detail = ", ".join(f"{k}={v}" for k, v in result.items() if k not in ("action", "instance_id"))
    return f"{action}" + (f" ({detail})" if detail else "")


def local(args: argparse.Namespace) -> int:
    """`spotctl local ACTION`."""
    actions = {"up": _up, "down": _down, "status": _status, "notifications": _notifications}
    return actions[args.action](args)


def _up(args: argparse.Namespace) -> int:
    from spotctl.local import daemon

    state = daemon.start(instances=args.instances, seed=args.seed)
    text = (f"Local service running (pid {state['pid']}): AWS APIs at {state['endpoint']}, "
            f"migrations API at {state['control']}/api/migrations (Swagger UI: {state['control']}/api/swagger)\n"
            f"  simulated fleet: {state['fleet']['instances']} instances (seed {state['fleet']['seed']})\n"
            f"  try: spotctl plan --local   |   spotctl migrate --local --watch   |   spotctl local down")
    output(args, state, text)
    return EXIT_OK


def _down(args: argparse.Namespace) -> int:
    from spotctl.local import daemon

    stopped = daemon.stop()
    output(args, {"stopped": stopped}, "Local service stopped" if stopped else "No local service was running")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from spotctl.local import daemon

    state = daemon.running()
    output(args, state or {}, f"Running (pid {state['pid']}) at {state['endpoint']}" if state else "Not running")
    return EXIT_OK if state else EXIT_FAILED


def _notifications(args: argparse.Namespace) -> int:
    from spotctl.local import daemon

    state = daemon.running()
    if not state:
        raise UsageError("no local service is running: start one with `spotctl local up`")
    sent = daemon.control(state, "/_local/notifications")
    output(args, sent, "\n\n".join(f"{n['subject']}\n{n['message']}" for n in sent) or "No notifications yet")
    return EXIT_OK
