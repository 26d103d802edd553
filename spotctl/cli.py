"""spotctl: run and steer safe on-demand to Spot migrations of EC2 fleets.

Where commands go:
  by default   the deployed stack (CloudFormation stack SpotMigration, or --stack NAME),
               with your usual AWS credentials and region (--region to override)
  --local      the embedded runtime: a simulated fleet on a local service that
               `spotctl local up` starts (and the first --local command starts for you)

Try it locally:
  spotctl local up                       start the local service with a 10-instance fleet
  spotctl plan --local                   dry run: candidates, exclusions with reasons, savings
  spotctl migrate --local --watch        migrate, follow the waves live
  spotctl approve MIGRATION_ID --local   approve it (from another terminal, or before --watch)
  spotctl graph MIGRATION_ID --local --out run.html
  spotctl simulate-interruption INSTANCE_ID
  spotctl local down

Exit codes: 0 done (or started / still running); 1 the migration failed, was rolled back,
rejected, vetoed or timed out; 2 bad usage or input (nothing was started or changed);
3 no such migration; 4 conflict (not waiting for a decision: already decided, ended, or
still not at its approval step after --wait; or the migration id is used by another request).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from . import local_commands
from .demo import DEGRADE_WAVES
from .demo import run as run_demo
from .exit_codes import EXIT_CONFLICT, EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE
from .graph_file import write_graph
from .output import output
from .request_flags import UsageError, add_request_flags, build_request

TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
APPROVAL_WAIT = 120.0  # seconds approve/reject wait, by default, for a migration to reach its approval step
FIRST_RETRY, MAX_RETRY = 0.5, 5.0  # seconds between attempts meanwhile (doubling)


def _backend(args: argparse.Namespace):
    from spotctl.backend import connect

    return connect(local=args.local, stack=args.stack, region=args.region)


def _exit_for(execution_status: str | None) -> int:
    return EXIT_FAILED if execution_status in ("FAILED", "TIMED_OUT", "ABORTED") else EXIT_OK


def _wait_until_done(migrations, migration_id: str, poll: float):
    while True:
        detail = migrations.get(migration_id)
        if detail.execution_status in TERMINAL:
            return detail
        time.sleep(poll)


def _plan(args: argparse.Namespace) -> int:
    from spotctl.views import render_plan

    backend = _backend(args)
    body = build_request(args, backend.outputs, dry_run=True)
    started = backend.migrations.start(body)
    if not args.json:
        print(f"Analysing (dry run {started.migration_id}) ...", file=sys.stderr)
    detail = _wait_until_done(backend.migrations, started.migration_id, _poll(args))
    entries, token = [], None
    while detail.summary:
        page = backend.migrations.plan(started.migration_id, limit=100, next_token=token)
        entries += page.items
        token = page.next_token
        if not token:
            break
    data = {"migration": detail.model_dump(mode="json"), "plan": [e.model_dump(mode="json") for e in entries]}
    output(args, data, render_plan(detail, entries) if detail.summary else _status_text(detail))
    return _exit_for(detail.execution_status)


def _migrate(args: argparse.Namespace) -> int:
    backend = _backend(args)
    body = build_request(args, backend.outputs, dry_run=False)
    started = backend.migrations.start(body)
    return _started(args, backend, started, body.approval.auto_approve, "Migration")


def _revert(args: argparse.Namespace) -> int:
    from spotctl.request_flags import build_revert

    backend = _backend(args)
    body = build_revert(args)
    started = backend.migrations.revert(args.migration_id, body)
    return _started(args, backend, started, body.approval.auto_approve, f"Revert of {args.migration_id}")


def _started(args: argparse.Namespace, backend, started, auto_approve: bool, what_it_is: str) -> int:
    """What `migrate` and `revert` print once their migration has started (or follow it with --watch)."""
    if args.watch:
        if not args.json:
            what = "started" if started.created else "already started"
            print(f"{what_it_is} {started.migration_id} {what}", file=sys.stderr)
        return _follow(args, backend.migrations, started.migration_id)
    what = "started" if started.created else "was already started with this request; nothing new"
    where = " --local" if args.local else ""
    text = f"{what_it_is} {started.migration_id} {what}.\n  follow it:  spotctl watch {started.migration_id}{where}"
    if not auto_approve:
        text += f"\n  it will wait for approval: spotctl approve {started.migration_id}{where}"
    output(args, started.model_dump(mode="json"), text)
    return EXIT_OK


def _status_text(detail) -> str:
    from spotctl.views import render_status

    return render_status(detail)


def _status(args: argparse.Namespace) -> int:
    detail = _backend(args).migrations.get(args.migration_id)
    output(args, detail.model_dump(mode="json"), _status_text(detail))
    return _exit_for(detail.execution_status)


def _list(args: argparse.Namespace) -> int:
    from spotctl.views import render_list

    page = _backend(args).migrations.list(status=args.status, limit=args.limit, next_token=args.next_token)
    output(args, page.model_dump(mode="json"), render_list(page))
    return EXIT_OK


def _watch(args: argparse.Namespace) -> int:
    return _follow(args, _backend(args).migrations, args.migration_id)


def _poll(args: argparse.Namespace) -> float:
    return args.interval if getattr(args, "interval", None) else (0.5 if args.local else 5.0)


def _follow(args: argparse.Namespace, migrations, migration_id: str) -> int:
    """Redraw the migration's progress until the execution ends (JSON: one line per change)."""
    tty = sys.stdout.isatty() and not args.json
    last = None
    while True:
        detail = migrations.get(migration_id)
        frame = json.dumps(detail.model_dump(mode="json"), default=str) if args.json else _status_text(detail)
        if frame != last:
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J")
            elif last is not None and not args.json:
                print("-" * 60)
            print(frame, flush=True)
            last = frame
        if detail.execution_status in TERMINAL or detail.execution_status is None:
            return _exit_for(detail.execution_status)
        time.sleep(_poll(args))


def _retention(args: argparse.Namespace) -> int:
    from spot_core.domain.retention import MAX_RETENTION_DAYS, RetentionChange

    if not 0 <= args.days <= MAX_RETENTION_DAYS:
        raise UsageError(f"--days must be between 0 and {MAX_RETENTION_DAYS}, not {args.days}")
    retention = _backend(args).migrations.set_retention(args.migration_id, RetentionChange(days=args.days))
    output(args, retention.model_dump(mode="json"),
           f"Migration {args.migration_id}: stopped originals kept until {retention.until}")
    return EXIT_OK


def _decide(args: argparse.Namespace, approved: bool) -> int:
    backend = _backend(args)
    result = _decide_when_ready(args, backend.migrations, approved, backend.principal())
    output(args, result.model_dump(mode="json"),
           f"{'Approved' if approved else 'Rejected'} {args.migration_id} as {result.decided_by}")
    return EXIT_OK


def _decide_when_ready(args: argparse.Namespace, migrations, approved: bool, principal: str):
    """The decision, taken as soon as the migration waits for it: one on its way to its approval
    step (just started: analysing, reviewing) is waited for, up to --wait seconds; one past it
    (decided, ended, auto-approved) is a conflict at once."""
    from spot_core.services.migrations import NotAwaitingApproval

    deadline, delay = time.monotonic() + args.wait, FIRST_RETRY
    while True:
        try:
            return migrations.decide(args.migration_id, approved, principal=principal, reason=args.reason)
        except NotAwaitingApproval as exc:
            left = deadline - time.monotonic()
            if not exc.state.ahead or left <= 0:
                raise (_gave_up(args, exc) if exc.state.ahead and args.wait else exc) from None
            if delay == FIRST_RETRY and not args.json:
                print(f"Migration {args.migration_id} is {exc.state.status or 'starting'}: waiting up to "
                      f"{args.wait:g} s for its approval step ...", file=sys.stderr)
            time.sleep(min(delay, left))
            delay = min(2 * delay, MAX_RETRY)


def _gave_up(args: argparse.Namespace, exc: Exception) -> Exception:
    from spot_core.domain.errors import ApprovalNotPending

    where = " --local" if args.local else ""
    return ApprovalNotPending(f"{exc} (still, after waiting {args.wait:g} s): follow it with `spotctl watch "
                              f"{args.migration_id}{where}` and decide once it awaits approval, or wait longer "
                              "with --wait SECONDS")


def _seconds(text: str) -> float:
    """A --wait value: seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 24 * 3600:
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and 86400, not {text!r}")
    return value


def _graph(args: argparse.Namespace) -> int:
    path = write_graph(_backend(args).migrations, args.migration_id, args.out)
    output(args, {"migration_id": args.migration_id, "graph": path}, f"Execution graph of {args.migration_id}: {path}")
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    where = argparse.ArgumentParser(add_help=False)
    w = where.add_argument_group("where")
    w.add_argument("--local", action="store_true", help="use the embedded runtime (local service) instead of AWS")
    w.add_argument("--stack", default="SpotMigration", help="CloudFormation stack name (default SpotMigration)")
    w.add_argument("--region", default=None, help="AWS region (default: your AWS configuration)")
    w.add_argument("--json", action="store_true", help="machine-readable JSON output")

    summary, epilog = __doc__.split("\n\n", 1)
    p = argparse.ArgumentParser(prog="spotctl", description=summary.split(": ", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=epilog)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo",
                          help="migrate a simulated fleet end to end on the embedded runtime and print the report")
    demo.add_argument("--instances", type=int, default=10, help="fleet size (default 10)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the simulated fleet and Spot market (default 7)")
    demo.add_argument("--degrade-at", type=int, choices=sorted(DEGRADE_WAVES),
                      help="degrade quality at this wave %% (forces a rollback)")
    demo.add_argument("--reject", action="store_true", help="the customer rejects the migration")
    demo.add_argument("--interrupt", type=int, default=0, metavar="N",
                      help="after the rollout, EC2 interrupts N of the new Spot instances")
    demo.add_argument("--graph", default="demo-graph.html", metavar="FILE",
                      help="where to write the execution graph (default demo-graph.html; '' for none)")
    demo.add_argument("--asg", action="store_true",
                      help="also seed two Auto Scaling groups (one on a launch template, one on a launch "
                           "configuration) and move them")
    demo.add_argument("--revert", action="store_true",
                      help="after the rollout, revert the migrated instances to on-demand (a revert: waves, gates) "
                           "and return them to Spot (a migration of the reverted instances)")
    demo.add_argument("--json", action="store_true", help="print the report as one JSON document")
    demo.set_defaults(func=run_demo)

    plan = sub.add_parser("plan", parents=[where],
                          help="dry run: candidates, exclusions with reasons, savings; changes nothing")
    add_request_flags(plan)
    plan.set_defaults(func=_plan, auto_approve=False, approval_timeout=None)

    migrate = sub.add_parser("migrate", parents=[where],
                             help="start a migration (analysis, agent reviews, approval, waves)")
    add_request_flags(migrate)
    migrate.add_argument("--auto-approve", action="store_true", help="skip the customer approval step")
    migrate.add_argument("--approval-timeout", type=int, metavar="SECONDS",
                         help="how long to wait for a decision (default 86400)")
    migrate.add_argument("--watch", action="store_true",
                         help="follow the migration until it ends (exit code = outcome)")
    migrate.add_argument("--interval", type=float, help="seconds between refreshes with --watch")
    migrate.set_defaults(func=_migrate)

    revert = sub.add_parser("revert", parents=[where],
                            help="move a completed migration's instances back to on-demand (a migration of its own: "
                                 "waves, gates, approval); `spotctl migrate` brings them back to Spot")
    revert.add_argument("migration_id", help="the completed migration to revert")
    revert.add_argument("--instance-id", action="append", metavar="ID",
                        help="only these (original or current instance ids; repeatable); all by default")
    revert.add_argument("--id", metavar="REVERT_ID", help="the revert's own id (default: generated)")
    revert.add_argument("--waves", metavar="10,50,100", help="cumulative wave percentages, the last one 100")
    revert.add_argument("--bake", metavar="300,600,900", help="bake seconds after each wave")
    revert.add_argument("--auto-approve", action="store_true", help="skip the customer approval step")
    revert.add_argument("--approval-timeout", type=int, metavar="SECONDS",
                        help="how long to wait for a decision (default 86400)")
    revert.add_argument("--watch", action="store_true", help="follow the revert until it ends (exit code = outcome)")
    revert.add_argument("--interval", type=float, help="seconds between refreshes with --watch")
    revert.set_defaults(func=_revert)

    for name, approved in (("approve", True), ("reject", False)):
        d = sub.add_parser(name, parents=[where],
                           help=f"{name} a migration waiting for approval (recorded with your IAM identity)")
        d.add_argument("migration_id")
        d.add_argument("--reason", required=not approved, help="why (required to reject)")
        d.add_argument("--wait", type=_seconds, default=APPROVAL_WAIT, metavar="SECONDS",
                       help=f"a migration not at its approval step yet (just started) is waited for this long "
                            f"(default {APPROVAL_WAIT:g}; 0: not at all)")
        d.set_defaults(func=lambda a, ok=approved: _decide(a, ok))

    retention = sub.add_parser("retention", parents=[where],
                               help="keep a completed migration's stopped originals DAYS more (0: retire them now)")
    retention.add_argument("migration_id")
    retention.add_argument("--days", type=int, required=True, help="days from now (0-365; 0: at the next sweep)")
    retention.set_defaults(func=_retention)

    status = sub.add_parser("status", parents=[where],
                            help="a migration's state, waves, quality numbers, verdicts and savings")
    status.add_argument("migration_id")
    status.set_defaults(func=_status)

    lst = sub.add_parser("list", parents=[where], help="migrations, newest first")
    lst.add_argument("--status", help="RUNNING, SUCCEEDED, FAILED, ... "
                                      "or a migration status such as awaiting_approval, rolled_back")
    lst.add_argument("--limit", type=int, default=20, help="migrations per page (1-100, default 20)")
    lst.add_argument("--next-token", help="continue from a previous page")
    lst.set_defaults(func=_list)

    watch = sub.add_parser("watch", parents=[where],
                           help="live progress until the migration ends (exit code = outcome)")
    watch.add_argument("migration_id")
    watch.add_argument("--interval", type=float, help="seconds between refreshes (default 5, 0.5 with --local)")
    watch.set_defaults(func=_watch)

    graph = sub.add_parser("graph", parents=[where],
                           help="the execution drawn on the state machine, as a self-contained HTML page")
    graph.add_argument("migration_id")
    graph.add_argument("--out", required=True, metavar="FILE.html")
    graph.set_defaults(func=_graph)

    for name, kind, what in (("simulate-interruption", "interruption", "a Spot interruption warning"),
                             ("simulate-rebalance", "rebalance", "a rebalance recommendation")):
        s = sub.add_parser(name, help=f"local service: EC2 sends {what} for INSTANCE_ID through the deployed rules")
        s.add_argument("instance_id")
        s.add_argument("--keep", action="store_true",
                       help="after an interruption warning, do not let EC2 reclaim the instance")
        s.add_argument("--json", action="store_true")
        s.set_defaults(func=lambda a, k=kind: local_commands.simulate(a, k), local=True)

    local = sub.add_parser("local",
                           help="start, stop or check the local service behind --local; show what SNS sent")
    local.add_argument("action", choices=["up", "down", "status", "notifications"])
    local.add_argument("--instances", type=int, default=10, help="size of the simulated fleet (up; default 10)")
    local.add_argument("--seed", type=int, default=7, help="seed of the simulated fleet and market (up; default 7)")
    local.add_argument("--json", action="store_true")
    local.set_defaults(func=local_commands.local)
    return p


def main(argv: list[str] | None = None) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from spot_core.domain.errors import (
        ApprovalNotPending,
        InvalidMigrationRequest,
        MigrationConflict,
        MigrationNotFound,
    )
    from spotctl.backend import BackendError
    from spotctl.local.daemon import LocalServiceError

    args = parser().parse_args(argv)
    errors = (
        ((UsageError, InvalidMigrationRequest, BackendError, LocalServiceError), EXIT_USAGE),
        (MigrationNotFound, EXIT_NOT_FOUND),
        ((ApprovalNotPending, MigrationConflict), EXIT_CONFLICT),
        ((ClientError, BotoCoreError), EXIT_FAILED),
    )
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        code = next((code for kinds, code in errors if isinstance(exc, kinds)), None)
        if code is None:
            raise
        print(f"spotctl {args.command}: {exc}", file=sys.stderr)
        return code
