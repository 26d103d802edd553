"""The migration request from spotctl's flags (and an optional JSON file)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError

OPT_IN = "spot-migration:opt-in"


class UsageError(Exception):
    """Bad command-line input; nothing was started or changed."""


def add_request_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to migrate (default: every running instance tagged spot-migration:opt-in=true)")
    g.add_argument("--tag", action="append", metavar="KEY=VALUE",
                   help="select instances with this tag (repeatable: all must match)")
    g.add_argument("--instance-id", action="append", metavar="ID",
                   help="only these instances (repeatable; they must be opted in)")
    g.add_argument("--request", metavar="FILE", help="a JSON migration request (see README); flags override its fields")
    g.add_argument("--min-savings", type=float, metavar="PCT", help="skip instances saving less than this (default 10)")
    g.add_argument("--id", metavar="MIGRATION_ID",
                   help="the migration id (default: generated); the same id and request again starts nothing new")
    q = p.add_argument_group("rollout and quality")
    q.add_argument("--waves", metavar="10,50,100", help="cumulative wave percentages, the last one 100")
    q.add_argument("--bake", metavar="300,600,900", help="bake seconds after each wave")
    q.add_argument("--target-group", metavar="ARN",
                   help="ALB target group whose latency and 5xx the quality gates watch")
    q.add_argument("--threshold", type=float, metavar="PCT",
                   help="allowed quality degradation vs the baseline (default 5)")
    q.add_argument("--alarm", action="append", metavar="NAME",
                   help="a CloudWatch alarm that fails the gate when in ALARM (repeatable)")


def build_request(args: argparse.Namespace, outputs: dict, dry_run: bool):
    """The migration request from --request FILE and the flags (flags win)."""
    from spot_core.domain.request import StartMigration

    body = _request_file(args.request)
    _select(_section(body, "selector"), args)
    _rollout(body, args)
    _quality(_section(body, "quality"), args, outputs)
    if args.min_savings is not None:
        body["min_savings_pct"] = args.min_savings
    body["dry_run"] = dry_run or body.get("dry_run", False)
    return _validated(StartMigration, body, "migration")


def build_revert(args: argparse.Namespace):
    """The revert request from the flags (`spotctl revert`)."""
    from spot_core.domain.request import RevertMigration

    body: dict[str, Any] = {"instance_ids": args.instance_id or []}
    _rollout(body, args)
    return _validated(RevertMigration, body, "revert")


def _rollout(body: dict[str, Any], args: argparse.Namespace) -> None:
    """What `migrate` and `revert` share: waves, bakes, approval, the id."""
    if args.waves:
        body["waves"] = _numbers(args.waves, float, "--waves")
    if args.bake:
        body["bake_seconds"] = _numbers(args.bake, int, "--bake")
    _approval(_section(body, "approval"), args)
    if args.id:
        body["migration_id"] = args.id


def _validated(model: Any, body: dict[str, Any], what: str):
    from pydantic import ValidationError

    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise UsageError(f"invalid {what} request: {_problems(exc)}") from None


def _request_file(path: str | None) -> dict[str, Any]:
    """The --request FILE's fields (none without the flag): a JSON object in UTF-8."""
    if not path:
        return {}
    try:
        body = json.loads(Path(path).read_text(encoding="utf-8"))
    except RecursionError:
        raise UsageError(f"--request {path}: not a migration request: nested too deeply") from None
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
        raise UsageError(f"--request {path}: {exc}") from None
    if not isinstance(body, dict):
        from spot_core.domain.request import json_type

        raise UsageError(f"--request {path}: must hold a JSON object (the migration request), not {json_type(body)}")
    return body


def _section(body: dict[str, Any], key: str) -> dict[str, Any]:
    """The object at body[key] that flags add to (created when absent); when it is something else,
    the flags' values go nowhere and validation reports the field."""
    section = body.setdefault(key, {})
    return section if isinstance(section, dict) else {}


def _select(selector: dict, args: argparse.Namespace) -> None:
    """--tag and --instance-id; instances picked by id must still be opted in."""
    if args.tag:
        selector["tags"] = dict(_pair(t) for t in args.tag)
    if args.instance_id:
        selector["instance_ids"] = args.instance_id
        selector.setdefault("tags", {OPT_IN: "true"})


def _quality(quality: dict, args: argparse.Namespace, outputs: dict) -> None:
    for flag, key in (("threshold", "threshold_pct"), ("target_group", "target_group_arn")):
        if getattr(args, flag) is not None:
            quality[key] = getattr(args, flag)
    if args.alarm:
        quality["alarm_names"] = args.alarm
    if "target_group_arn" not in quality and outputs.get("TargetGroupArn"):
        quality["target_group_arn"] = outputs["TargetGroupArn"]  # the local service's simulated ALB


def _approval(approval: dict, args: argparse.Namespace) -> None:
    """Only `migrate` has the approval flags."""
    if getattr(args, "auto_approve", False):
        approval["auto_approve"] = True
    if getattr(args, "approval_timeout", None):
        approval["timeout_seconds"] = args.approval_timeout


def _problems(exc: ValidationError) -> str:
    """A pydantic ValidationError as `field.path: message; ...`."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in exc.errors())


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--tag {text!r}: expected KEY=VALUE")
    return key, value


def _numbers(text: str, kind: type, flag: str) -> list:
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected comma-separated numbers") from None
