"""Interruption hooks: what the owner of an instance asks the product to do when EC2 takes it
back (a Spot interruption warning, a rebalance recommendation the product swaps on, a reclaim).

- `on_interruption`: `replace` (the default: the replacement takes over at once), `checkpoint`
  (a checkpoint runs on the interrupted instance by SSM Run Command, within the two-minute
  warning) or `drain` (the interrupted instance leaves its target groups first; the
  replacement joins them once it has drained, or its time is up; a checkpoint may follow).
- a checkpoint: a shell command (AWS-RunShellScript), or an SSM document of this account named
  `spot-migration-*` (the replacement function may run only those).
- a webhook: the *name* of where its HTTPS URL is kept, never the URL: a Secrets Manager secret
  named `spot-migration/*` or an SSM parameter (SecureString) under `/spot-migration/`.

The request's `interruption` block sets them for every instance; the instance's tags override
them field by field. Bad values fail with the field (or tag) named and never echo a webhook value
(a URL put there by mistake must not reach a message).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ON_INTERRUPTION_TAG = "spot-migration:on-interruption"
CHECKPOINT_TAG = "spot-migration:checkpoint-command"  # a shell command, or ssm:<document name>
CHECKPOINT_TIMEOUT_TAG = "spot-migration:checkpoint-timeout"
WEBHOOK_TAG = "spot-migration:webhook"  # secretsmanager:<name or ARN> | ssm:<parameter name>
HOOK_TAGS = (ON_INTERRUPTION_TAG, CHECKPOINT_TAG, CHECKPOINT_TIMEOUT_TAG, WEBHOOK_TAG)
DOCUMENT_PREFIX = "ssm:"  # a checkpoint tag naming an SSM document

OnInterruption = Literal["replace", "checkpoint", "drain"]
ON_INTERRUPTION: tuple[OnInterruption, ...] = ("replace", "checkpoint", "drain")
# What the replacement function may read and run (its IAM policy says the same, infra/constructs/permissions.py).
SECRET_PREFIX = "spot-migration/"
PARAMETER_PREFIX = "/spot-migration/"
DOCUMENT_NAME_PREFIX = "spot-migration-"
DOCUMENT = re.compile(r"^spot-migration-[A-Za-z0-9_.-]{1,113}\Z")
SECRET_NAME = re.compile(r"^spot-migration/[A-Za-z0-9/_+=.@-]{1,497}\Z")
SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:spot-migration/[A-Za-z0-9/_+=.@-]{1,"
                        r"497}\Z")
PARAMETER_NAME = re.compile(r"^/spot-migration/[A-Za-z0-9_./-]{1,1000}\Z")
MAX_CHECKPOINT_COMMAND = 1000  # characters: a tag value holds 256; the request may say more
MIN_TIMEOUT, MAX_TIMEOUT = 10, 120  # a checkpoint runs within the two-minute warning
DEFAULT_TIMEOUT_SECONDS = 90
WARNING_SECONDS = 120  # EC2 takes a Spot instance back two minutes after its interruption warning
RECLAIM_KINDS = ("interruption", "state-change")  # the events of EC2 taking the instance back (drain first)
MIN_CHECKPOINT_SECONDS = 5  # less time left than this before the reclaim: the checkpoint is not sent
WEBHOOK_TIMEOUT_SECONDS = 5.0  # one attempt, never retried: a slow receiver costs the handler this much at most
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
WEBHOOK_RULE = (f"secretsmanager:<secret name or ARN, named {SECRET_PREFIX}*> or ssm:<SecureString parameter "
                f"under {PARAMETER_PREFIX}>, holding the https:// URL (never the URL itself)")

HookName = Literal["checkpoint", "drain", "webhook"]
HookStatus = Literal["succeeded", "failed", "timed_out", "skipped"]


class InterruptionHooks(BaseModel):
    """What to do when EC2 takes an instance back (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    on_interruption: OnInterruption = Field("replace", description="replace | checkpoint | drain (tag "
                                            f"{ON_INTERRUPTION_TAG} overrides it)")
    checkpoint_command: str | None = Field(None, min_length=1, max_length=MAX_CHECKPOINT_COMMAND,
                                           description="a shell command run on the interrupted instance by SSM "
                                           "Run Command (AWS-RunShellScript); never logged")
    checkpoint_document: str | None = Field(None, description=f"or an SSM document of this account named "
                                            f"{DOCUMENT_NAME_PREFIX}* (run with its default parameters)")
    webhook: str | None = Field(None, description=WEBHOOK_RULE)
    timeout_seconds: int | None = Field(None, ge=MIN_TIMEOUT, le=MAX_TIMEOUT,
                                        description="how long the checkpoint may take (the deployment's "
                                        "HOOK_TIMEOUT_SECONDS when absent); never past the reclaim")

    @field_validator("checkpoint_command")
    @classmethod
    def _command(cls, command: str | None) -> str | None:
        if command is not None and not command.strip():
            raise ValueError("must not be blank")
        return command

    @field_validator("checkpoint_document")
    @classmethod
    def _document(cls, name: str | None) -> str | None:
        if name is not None and not DOCUMENT.match(name):
            raise ValueError(f"must be an SSM document name starting with {DOCUMENT_NAME_PREFIX} (letters, digits, "
                             "'_', '-', '.'; at most 128 characters)")
        return name

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, reference: str | None) -> str | None:
        if reference is not None:
            webhook_reference(reference)
        return reference

    @model_validator(mode="after")
    def _consistent(self) -> InterruptionHooks:
        if self.checkpoint_command is not None and self.checkpoint_document is not None:
            raise ValueError("checkpoint_command and checkpoint_document: give one, not both")
        if self.on_interruption == "checkpoint" and not self.has_checkpoint:
            raise ValueError(f"on_interruption checkpoint needs checkpoint_command or checkpoint_document "
                             f"(tag {CHECKPOINT_TAG})")
        if self.on_interruption == "replace" and self.has_checkpoint:
            raise ValueError(f"a checkpoint runs only with on_interruption checkpoint or drain (tag "
                             f"{ON_INTERRUPTION_TAG})")
        return self

    @property
    def has_checkpoint(self) -> bool:
        return self.checkpoint_command is not None or self.checkpoint_document is not None

    @property
    def is_default(self) -> bool:
        return self == DEFAULT_HOOKS

    def checkpoint(self, timeout_seconds: int) -> Checkpoint | None:
        """The checkpoint to run, allowed `timeout_seconds` (None: this instance has none)."""
        if not self.has_checkpoint:
            return None
        return Checkpoint(command=self.checkpoint_command, document=self.checkpoint_document,
                          timeout_seconds=timeout_seconds)

    def describe(self) -> str:
        """For notes and notifications: what runs, never the command's text nor the webhook's name."""
        parts: list[str] = [self.on_interruption]
        if self.checkpoint_document:
            parts.append(f"checkpoint document {self.checkpoint_document}")
        elif self.checkpoint_command:
            parts.append("checkpoint command")
        if self.webhook:
            parts.append("webhook")
        return ", ".join(parts)


DEFAULT_HOOKS = InterruptionHooks()
# SSM's smallest execution timeout for AWS-RunShellScript, as the health probes assume; the handler
# stops waiting at the checkpoint's own bound anyway (the instance is reclaimed then).
MIN_EXECUTION_TIMEOUT = 30


class Checkpoint(BaseModel):
    """A checkpoint to run now: a shell command (AWS-RunShellScript) or a document, within `timeout_seconds`."""

    model_config = ConfigDict(frozen=True)

    command: str | None = Field(None, repr=False)  # may carry a secret: never logged, never printed
    document: str | None = None
    timeout_seconds: int

    @property
    def execution_timeout(self) -> int:
        return max(self.timeout_seconds, MIN_EXECUTION_TIMEOUT)


def webhook_reference(reference: str) -> tuple[Literal["secretsmanager", "ssm"], str]:
    """(store, name) of a webhook reference. ValueError (never echoing the value): not one."""
    store, _, name = reference.partition(":")
    if store == "secretsmanager" and (SECRET_NAME.match(name) or SECRET_ARN.match(name)):
        return "secretsmanager", name
    if store == "ssm" and PARAMETER_NAME.match(name):
        return "ssm", name
    if "://" in reference:
        raise ValueError(f"must not hold a URL: keep the URL in Secrets Manager or SSM Parameter Store and give "
                         f"its name ({WEBHOOK_RULE})")
    raise ValueError(f"must be {WEBHOOK_RULE}")


def webhook_url_problem(url: str) -> str | None:
    """Why a webhook URL read from its secret is refused (None: it is accepted): https only, but
    plain http to this machine (loopback: harmless, what the embedded runtime and tests use).
    The reason never quotes the URL."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        return "the secret does not hold a URL"
    if not host:
        return "the secret does not hold a URL"
    if parts.scheme == "https" or (parts.scheme == "http" and host in LOOPBACK_HOSTS):
        return None
    return "the secret's URL is not https:// (only loopback may be http://)"


# --- from tags ----------------------------------------------------------------------------------------
def hooks_of(tags: Mapping[str, str], default: InterruptionHooks | None) -> InterruptionHooks:
    """The instance's hooks: the request's (`default`), each field overridden by its tag. A tag
    `spot-migration:on-interruption=replace` drops the request's checkpoint. ValueError naming
    the tag: a tag that says nothing valid."""
    values = {tag: tags[tag].strip() for tag in HOOK_TAGS if tag in tags}
    if not values:
        return default or DEFAULT_HOOKS
    fields: dict[str, Any] = {**(default or DEFAULT_HOOKS).model_dump(), **_mode_fields(values),
                              **_checkpoint_fields(values)}
    if WEBHOOK_TAG in values:
        fields["webhook"] = values[WEBHOOK_TAG]
    if CHECKPOINT_TIMEOUT_TAG in values:
        fields["timeout_seconds"] = _timeout(values[CHECKPOINT_TIMEOUT_TAG])
    try:
        return InterruptionHooks.model_validate(fields)
    except ValidationError as exc:
        raise ValueError("; ".join(_tag_error(e) for e in exc.errors())) from None


def _mode_fields(values: Mapping[str, str]) -> dict[str, str | None]:
    """The mode its tag names; `replace` without a checkpoint tag drops the request's checkpoint."""
    mode = values.get(ON_INTERRUPTION_TAG)
    if mode is None:
        return {}
    if mode not in ON_INTERRUPTION:
        raise ValueError(f"{ON_INTERRUPTION_TAG}={mode[:40]!r} is not one of {', '.join(ON_INTERRUPTION)}")
    if mode == "replace" and CHECKPOINT_TAG not in values:
        return {"on_interruption": mode, "checkpoint_command": None, "checkpoint_document": None}
    return {"on_interruption": mode}


def _checkpoint_fields(values: Mapping[str, str]) -> dict[str, str | None]:
    value = values.get(CHECKPOINT_TAG)
    if value is None:
        return {}
    if value.startswith(DOCUMENT_PREFIX):
        return {"checkpoint_document": value.removeprefix(DOCUMENT_PREFIX), "checkpoint_command": None}
    return {"checkpoint_command": value, "checkpoint_document": None}


def _timeout(value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"{CHECKPOINT_TIMEOUT_TAG}={value[:20]!r} is not a number of seconds")
    return int(value)


FIELD_TAGS = {"on_interruption": ON_INTERRUPTION_TAG, "checkpoint_command": CHECKPOINT_TAG,
              "checkpoint_document": CHECKPOINT_TAG, "webhook": WEBHOOK_TAG, "timeout_seconds": CHECKPOINT_TIMEOUT_TAG}


def _tag_error(error: Mapping[str, Any]) -> str:
    """A validation error of the merged hooks, named by its tag (the values are never quoted)."""
    where = FIELD_TAGS.get(str(error["loc"][0])) if error["loc"] else None
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def hooks_for(tags: Mapping[str, str], default: InterruptionHooks | None) -> InterruptionHooks | tuple[str, str]:
    """At planning: the instance's hooks, or the exclusion its bad hook tags are."""
    try:
        return hooks_of(tags, default)
    except ValueError as exc:
        return "invalid_hook_tag", f"interruption hook tags: {exc}"


def hooks_at_interruption(tags: Mapping[str, str], planned: InterruptionHooks | None
                          ) -> tuple[InterruptionHooks, str | None]:
    """At interruption time: the hooks to run, and a note when the tags are invalid (changed since
    the plan): then the instance is replaced as by default, without hooks."""
    try:
        return hooks_of(tags, planned), None
    except ValueError as exc:
        return DEFAULT_HOOKS, f"invalid interruption hook tags ({exc}): replaced without hooks"


# --- when they run --------------------------------------------------------------------------------------
def seconds_to_reclaim(kind: str, event_time: datetime, now: datetime) -> float | None:
    """How long EC2 leaves the instance after this event: two minutes after its interruption
    warning; None when EC2 set no deadline (a rebalance recommendation)."""
    if kind == "rebalance":
        return None
    return WARNING_SECONDS - (now - event_time).total_seconds()


def drains_first(on_interruption: str, kind: str) -> bool:
    """The instance leaves its target groups and drains before its replacement joins them only when
    EC2 takes it back (its interruption warning, or a reclaim's state change). Nothing forces out an
    instance a swap the product starts itself (a rebalance recommendation with the `replace` policy):
    its replacement registers first, as with `replace`, so no capacity is lost waiting for a drain."""
    return on_interruption == "drain" and kind in RECLAIM_KINDS


def hook_budget(timeout_seconds: float, to_reclaim: float | None, invocation_left: float) -> float:
    """Seconds a hook may wait: its timeout, never past the reclaim nor this invocation's time."""
    bounds = [timeout_seconds, invocation_left] + ([to_reclaim] if to_reclaim is not None else [])
    return max(0.0, min(bounds))


class HookResult(BaseModel):
    """How a hook ended: status, SSM's status and exit code, or the HTTP status; never a command's
    output, a command's text or a webhook's URL."""

    hook: HookName
    status: HookStatus
    detail: str = ""
    exit_code: int | None = None
    seconds: float | None = None

    def line(self) -> str:
        detail = f": {self.detail}" if self.detail else ""
        took = f" after {self.seconds:.0f} s" if self.seconds is not None else ""
        return f"{self.hook} {self.status}{detail}{took}"


def webhook_payload(event: Mapping[str, Any], instance: Mapping[str, Any], replacement: Mapping[str, Any],
                    on_interruption: OnInterruption, results: list[HookResult]) -> dict[str, Any]:
    """What the webhook receives (POST, JSON)."""
    return {"source": "spot-migration", "event": dict(event), "instance": dict(instance),
            "replacement": dict(replacement), "on_interruption": on_interruption,
            "hooks": [r.model_dump(exclude_none=True) for r in results]}
