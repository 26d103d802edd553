"""Runs the real Lambda handlers in-process for moto (whose Lambda needs Docker).

Replaces `moto.awslambda.models.LambdaFunction._invoke_lambda`, which returns
`(payload_json, errored, logs)`. Invocations are serialised (one lock): handlers read
their configuration from os.environ, like in Lambda, and each gets it to itself.
Everything a handler prints (Powertools JSON logs, EMF metrics) is captured per
invocation, as CloudWatch Logs would, instead of reaching the terminal.

Crash injection: `crash_after(function, k)` kills an invocation right after its k-th
mutating AWS call (any operation but Describe*/Get*/List*/BatchGet*/Query/Scan, counted by
a botocore after-call hook on every session), as a Lambda killed at its timeout
(Sandbox.Timedout); `mutating_calls()` tells how many mutating calls each handler run made.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from moto.core.exceptions import JsonRESTError

REPO = Path(__file__).resolve().parents[2]


class _RoutedStdout(io.TextIOBase):
    """sys.stdout stand-in: writes go to the current invocation's buffer, if any."""

    def __init__(self, real: Any):
        self.real = real
        self.local = threading.local()

    def write(self, text: str) -> int:
        buffer = getattr(self.local, "buffer", None)
        return (buffer or self._open()).write(text)

    def flush(self) -> None:
        self._open().flush()

    def _open(self) -> Any:
        """The stream to write through; a test harness may have closed the one saved earlier."""
        return sys.__stdout__ if getattr(self.real, "closed", False) else self.real


_ROUTER: _RoutedStdout | None = None
_ACTIVE: InProcessLambdas | None = None
# IAM action prefixes that differ from the API's signing name
_IAM_PREFIX = {"monitoring": "cloudwatch"}


# Operations IAM authorises per item: TransactWriteItems has no action of its own
_PER_ITEM = {"TransactWriteItems": {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                                    "ConditionCheck": "ConditionCheckItem"}}


def _iam_actions(operation: str, request: Any) -> list[str]:
    """`request`: botocore's request dict at before-call (the JSON body serialised already)."""
    per_item = _PER_ITEM.get(operation)
    if not per_item:
        return [operation]
    body = json.loads(request.get("body") or b"{}")
    return sorted({per_item[kind] for item in body.get("TransactItems", []) for kind in item if kind in per_item})


def _record_call(model: Any = None, params: Any = None, **_: Any) -> None:
    """botocore before-call hook: which function made which AWS call (as IAM actions)."""
    runtime = _ACTIVE
    function = getattr(runtime._current, "function", None) if runtime else None
    if function:
        meta = model.service_model.metadata
        prefix = meta.get("signingName") or meta["endpointPrefix"]
        runtime.calls += [(function, f"{_IAM_PREFIX.get(prefix, prefix)}:{action}")
                          for action in _iam_actions(model.name, params)]


def _set_environment(values: dict[str, str]) -> dict[str, str]:
    """Set these variables; the earlier values of those that had one (to set back). Other threads
    read os.environ meanwhile (botocore, building a client, copies it): the variables are only
    ever assigned, never removed or cleared, so no reader finds a key gone between listing the
    keys and reading one (what clearing the environment did). The runtime restores the whole
    environment when it ends."""
    earlier = {k: os.environ[k] for k in values if k in os.environ and os.environ[k] != values[k]}
    for key, value in values.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
    return earlier


def _route_log_handlers(router: _RoutedStdout, service: str = "spot-migration") -> None:
    """The Powertools logger may have been created before this runtime (a test importing a
    handler module first) and still hold an older stdout: point it at the router."""
    import logging

    for handler in logging.getLogger(service).handlers:
        if not isinstance(handler, logging.StreamHandler):
            continue
        if handler.stream is not router and handler.stream not in (sys.stderr, sys.__stderr__):
            handler.setStream(router)


class LambdaServiceFault(JsonRESTError):
    """An injected Lambda service error: Step Functions sees Lambda.ServiceException."""

    code = 500

    def __init__(self) -> None:
        super().__init__("ServiceException", "injected Lambda service fault")


class InvalidRequestContent(JsonRESTError):
    """What Lambda answers an Invoke whose payload is not JSON (HTTP 400)."""

    code = 400

    def __init__(self, reason: str) -> None:
        super().__init__("InvalidRequestContentException", f"Could not parse request body into json: {reason}")


MOTO_EMPTY_PAYLOAD = "{}"  # moto's LambdaFunction.invoke hands an empty payload on as this string


def lambda_payload(payload: Any) -> Any:
    """The event a handler receives, as Lambda delivers it: any JSON value (object, array,
    string, number, boolean, null) as is; an empty payload as {}. ``payload`` is what moto
    decoded (a JSON value, or "{}" for an empty payload) or raw bytes, which must be UTF-8
    JSON: InvalidRequestContentException otherwise."""
    if payload == MOTO_EMPTY_PAYLOAD or payload in (b"", bytearray()):
        return {}
    if not isinstance(payload, (bytes, bytearray)):
        return payload
    try:
        return json.loads(payload.decode("utf-8"), parse_constant=_not_json)
    except UnicodeDecodeError:
        raise InvalidRequestContent("the payload is not UTF-8") from None
    except RecursionError:
        raise InvalidRequestContent("the payload is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, a number too long to read
        raise InvalidRequestContent(f"the payload is not JSON ({exc})") from None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


@dataclass
class Invocation:
    function: str
    event: Any
    payload: Any
    errored: bool
    logs: str
    seconds: float


class FakeContext:
    def __init__(self, name: str, arn: str, timeout: int, memory: int):
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = arn
        self.memory_limit_in_mb = memory
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = self.aws_request_id
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class InProcessLambdas:
    """Maps moto function names to the handler modules under functions/."""

    environment: dict[str, str]
    specs: dict[str, Any]  # function name -> catalog FunctionSpec
    invocations: list[Invocation] = field(default_factory=list)
    faults: dict[str, list[str]] = field(default_factory=dict)
    _modules: dict[str, ModuleType] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stdout: _RoutedStdout | None = None
    calls: list[tuple[str, str]] = field(default_factory=list)  # (function, IAM action) per AWS call
    _current: threading.local = field(default_factory=threading.local)
    crashes: list[Crash] = field(default_factory=list)  # armed by crash_after, in arming order
    mutation_log: list[Mutations] = field(default_factory=list)  # one per handler run: its mutating AWS calls
    watchers: list[Callable[[Mutations], None]] = field(default_factory=list)  # told of each handler run's end

    def install(self) -> None:
        global _ACTIVE
        _ACTIVE = self
        import boto3

        boto3._get_default_session().events.register("before-call", _record_call, unique_id="spotctl-local-calls")
        _install_crash_hooks(boto3._get_default_session().events)
        # One router per process: loggers created during an earlier runtime keep writing
        # to it, so their output is still captured by later ones.
        global _ROUTER
        if _ROUTER is None:
            _ROUTER = _RoutedStdout(sys.stdout)
        elif sys.stdout is not _ROUTER:
            _ROUTER.real = sys.stdout
        self._stdout = _ROUTER
        sys.stdout = _ROUTER

    def uninstall(self) -> None:
        global _ACTIVE
        if _ACTIVE is self:
            _ACTIVE = None
        if self._stdout is not None and sys.stdout is self._stdout:
            sys.stdout = self._stdout.real

    def inject_fault(self, function: str, kind: str = "service", times: int = 1) -> None:
        """The next `times` invocations of `function` fail: 'service' (Lambda.ServiceException
        before the handler runs) or the name of an exception the handler 'raises'."""
        self.faults.setdefault(function, []).extend([kind] * times)

    def handler(self, name: str) -> Any:
        if name not in self._modules:
            path = REPO / self.specs[name].code_dir / "app.py"
            spec = importlib.util.spec_from_file_location(f"spot_function_{name}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self._modules[name] = module
        return self._crashable(name, self._modules[name].lambda_handler)

    def exclusive(self) -> threading.Lock:
        """Held while no invocation runs (the same lock every invocation holds): for a change the
        runtime makes to moto's state from outside a handler while executions run in threads."""
        return self._lock

    def invoke(self, fn: Any, event: Any) -> tuple[str, bool, str]:
        name = fn.function_name
        event = lambda_payload(event)
        fault = self.faults.get(name, []).pop(0) if self.faults.get(name) else None
        if fault == "service":
            self.invocations.append(Invocation(name, event, None, True, "injected service fault", 0.0))
            raise LambdaServiceFault()
        spec = self.specs[name]
        buffer = io.StringIO()
        started = time.perf_counter()
        with self._lock:
            saved_stdout = sys.stdout
            saved = _set_environment({**self.environment, "AWS_LAMBDA_FUNCTION_NAME": name,
                                      "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb)})
            router = self._stdout
            if saved_stdout is not router:  # a test harness swapped stdout since install()
                router.real = saved_stdout
            sys.stdout = router
            router.local.buffer = buffer
            self._current.function = name
            try:
                if fault:
                    raise type(fault, (Exception,), {})(f"injected {fault}")
                handler = self.handler(name)
                _route_log_handlers(router)
                result = handler(event, FakeContext(name, fn.function_arn, spec.timeout_seconds, spec.memory_mb))
                payload, errored = json.dumps(result, default=str), False
            except Exception as exc:  # noqa: BLE001 - whatever the handler raises is the Lambda error payload
                # the Lambda runtime's error shape; errorType is the error name Step Functions retries and catches
                payload = json.dumps({
                    "errorType": type(exc).__name__, "errorMessage": str(exc),
                    "stackTrace": traceback.format_exception(exc)[-5:],
                })
                errored = True
            finally:
                self._current.function = None
                router.local.buffer = None
                sys.stdout = saved_stdout
                _set_environment(saved)
        logs = buffer.getvalue()
        seconds = time.perf_counter() - started
        self.invocations.append(Invocation(name, event, json.loads(payload), errored, logs, seconds))
        return payload, errored, logs

    # --- crash injection: an invocation dies right after its k-th mutating AWS call ---------------
    def crash_after(self, function: str, k: int, error: str | None = None,
                    when: Callable[[Any], bool] | None = None) -> Crash:
        """Arm a crash: the next invocation of `function` (whose raw event satisfies `when`)
        that makes a k-th mutating AWS call (k >= 1) dies right after that call returned,
        once. The call's side effect stays; nothing after it runs (the handler's `except
        Exception` blocks do not see the kill, later AWS calls are refused) and the
        invocation ends errored with `error` (default Sandbox.Timedout, a Lambda killed at its
        timeout) as its errorType: the error name Step Functions retries or catches; an
        asynchronous caller (EventBridge) retries any error.
        An invocation that ends before its k-th mutating call leaves the crash armed."""
        if k < 1:
            raise ValueError("k counts mutating calls from 1")
        crash = Crash(function, k, error or TIMEOUT_ERROR, when)
        self.crashes.append(crash)
        return crash

    def mutating_calls(self, function: str | None = None, crashed: bool | None = None) -> list[Mutations]:
        """The mutating AWS calls of every handler run so far (of `function`), in order."""
        return [m for m in self.mutation_log
                if (function is None or m.function == function) and (crashed is None or m.crashed == crashed)]

    def _armed(self, name: str, event: Any) -> Crash | None:
        for crash in self.crashes:
            if crash.function == name and not crash.fired and (crash.when is None or crash.when(event)):
                return crash
        return None

    def _crashable(self, name: str, lambda_handler: Any) -> Any:
        """The handler, counting its mutating AWS calls and dying where a crash is armed."""
        lambdas = self

        def run(event: Any, context: Any) -> Any:
            state = lambdas._current
            log = Mutations(name, event)
            state.mutations, state.crash, state.killed = log, lambdas._armed(name, event), False
            try:
                result = lambda_handler(event, context)
            except BaseException:
                if not state.killed:
                    raise
                # the process is gone: nothing of the handler's own error handling ran
            else:
                if not state.killed:
                    return result
            finally:
                state.mutations = state.crash = None
                log.crashed = log.crash is not None
                lambdas.mutation_log.append(log)
                for watch in list(lambdas.watchers):
                    watch(log)
            state.killed = False
            crash = log.crash
            if crash is None or crash.error in TIMEOUT_ERRORS:  # no crash: the timing simulator's deadline
                lambdas.expire_in_progress()
            error = crash.error if crash is not None else TIMEOUT_ERROR
            why = f"injected crash after mutating call {crash.after} ({log.actions[-1:]})" if crash else \
                "the invocation reached its deadline on the virtual clock"
            raise type(error, (Exception,), {})(
                f"{why}: Task timed out after {lambdas.specs[name].timeout_seconds:.2f} seconds")

        return run

    def expire_in_progress(self) -> None:
        """A timed-out invocation ran until its deadline: what it marked in progress until then
        (Powertools Idempotency records and unfinished replacement claims, whose in-progress
        expiry is the Lambda deadline) has expired by the time anything retries it."""
        table = self.environment.get("TABLE_NAME")
        if not table:
            return
        import boto3

        function, self._current.function = self._current.function, None  # not the handler's own calls
        try:
            ddb = boto3.client("dynamodb", region_name=self.environment.get("AWS_REGION"))
            now_ms = int(time.time() * 1000)
            for page in ddb.get_paginator("scan").paginate(
                    TableName=table,
                    FilterExpression="#s IN (:p, :l1, :l2) AND attribute_exists(in_progress_expiration)",
                    ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={
                        ":p": {"S": "INPROGRESS"}, ":l1": {"S": "launching"}, ":l2": {"S": "launched"}}):
                for item in page["Items"]:
                    key = {k: item[k] for k in ("pk", "sk") if k in item}
                    ddb.update_item(TableName=table, Key=key, UpdateExpression="SET in_progress_expiration = :t",
                                    ExpressionAttributeValues={":t": {"N": str(now_ms - 1)}})
        finally:
            self._current.function = function


# --- crash injection ----------------------------------------------------------------------------------
TIMEOUT_ERROR = "Sandbox.Timedout"  # what Step Functions sees of a Lambda killed at its timeout
TIMEOUT_ERRORS = (TIMEOUT_ERROR, "States.Timeout")
_READ_PREFIXES = ("Describe", "Get", "List", "BatchGet")
_READ_OPERATIONS = ("Query", "Scan")
_HOOKS_INSTALLED: list[bool] = []


def is_mutating(operation: str) -> bool:
    """Any AWS operation but a read: not Describe*/Get*/List*/BatchGet*/Query/Scan."""
    return not (operation.startswith(_READ_PREFIXES) or operation in _READ_OPERATIONS)


class Killed(BaseException):
    """The invocation's process is gone (not an Exception: no handler code may catch it)."""


@dataclass
class Crash:
    function: str
    after: int  # dies right after this many mutating calls
    error: str = TIMEOUT_ERROR  # the invocation's errorType
    when: Callable[[Any], bool] | None = None  # which invocations (by raw event) it may hit
    fired: bool = False
    action: str | None = None  # the mutating call it died after (as an IAM action)


@dataclass
class Mutations:
    """One handler run: its mutating AWS calls (IAM actions, successful ones only) and whether it died."""

    function: str
    event: Any
    actions: list[str] = field(default_factory=list)
    crashed: bool = False
    crash: Crash | None = None

    @property
    def count(self) -> int:
        return len(self.actions)


def _counted_once(context: Any) -> bool:
    """True the first time a call is seen (the hook may be registered on a session twice)."""
    if not isinstance(context, dict):
        return True
    first = not context.get("spotctl_counted")
    context["spotctl_counted"] = True
    return first


def _iam_action(model: Any) -> str:
    meta = model.service_model.metadata
    prefix = meta.get("signingName") or meta["endpointPrefix"]
    return f"{_IAM_PREFIX.get(prefix, prefix)}:{model.name}"


def _count_mutation(http_response: Any = None, model: Any = None, context: Any = None, **_: Any) -> None:
    """botocore after-call hook: a successful mutating call of the current invocation is
    counted; the armed crash fires right after its k-th."""
    runtime = _ACTIVE
    log = getattr(runtime._current, "mutations", None) if runtime else None
    if log is None or model is None or not is_mutating(model.name) or not _counted_once(context):
        return
    if getattr(http_response, "status_code", 200) >= 300:
        return  # refused: no side effect
    log.actions.append(_iam_action(model))
    crash = runtime._current.crash
    if crash is not None and log.count == crash.after:
        crash.fired, crash.action, log.crash = True, log.actions[-1], crash
        runtime._current.killed = True
        raise Killed()


def _refuse_after_kill(**_: Any) -> None:
    """botocore before-call hook: a killed invocation makes no more calls."""
    runtime = _ACTIVE
    if runtime is not None and getattr(runtime._current, "killed", False):
        raise Killed()


def _install_crash_hooks(events: Any) -> None:
    """On the default session, and on every session created from now on (Powertools
    Idempotency makes its own), like moto's own stubber."""
    events.register("after-call", _count_mutation, unique_id="spotctl-local-crash-count")
    events.register("before-call", _refuse_after_kill, unique_id="spotctl-local-crash-refuse")
    if not _HOOKS_INSTALLED:
        from botocore.handlers import BUILTIN_HANDLERS

        BUILTIN_HANDLERS.append(("after-call", _count_mutation))
        BUILTIN_HANDLERS.append(("before-call", _refuse_after_kill))
        _HOOKS_INSTALLED.append(True)
