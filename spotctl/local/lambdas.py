"""Runs the real Lambda handlers in-process for moto (whose Lambda needs Docker).

Replaces `moto.awslambda.models.LambdaFunction._invoke_lambda`, which returns
`(payload_json, errored, logs)`. Invocations are serialised (one lock): handlers read
their configuration from os.environ, like in Lambda, and each gets it to itself.
Everything a handler prints (Powertools JSON logs, EMF metrics) is captured per
invocation, as CloudWatch Logs would, instead of reaching the terminal.
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
        return (buffer or self.real).write(text)

    def flush(self) -> None:
        self.real.flush()


_ROUTER: _RoutedStdout | None = None
_ACTIVE: InProcessLambdas | None = None
# IAM action prefixes that differ from the API's signing name
_IAM_PREFIX = {"monitoring": "cloudwatch"}


def _record_call(model: Any = None, **_: Any) -> None:
    """botocore before-call hook: which function made which AWS call (as an IAM action)."""
    runtime = _ACTIVE
    function = getattr(runtime._current, "function", None) if runtime else None
    if function:
        meta = model.service_model.metadata
        prefix = meta.get("signingName") or meta["endpointPrefix"]
        runtime.calls.append((function, f"{_IAM_PREFIX.get(prefix, prefix)}:{model.name}"))


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

    def install(self) -> None:
        global _ACTIVE
        _ACTIVE = self
        import boto3

        boto3._get_default_session().events.register("before-call", _record_call, unique_id="spotctl-local-calls")
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
        return self._modules[name].lambda_handler

    def invoke(self, fn: Any, event: Any) -> tuple[str, bool, str]:
        name = fn.function_name
        if isinstance(event, (str, bytes)):
            event = json.loads(event or "{}")
        fault = self.faults.get(name, []).pop(0) if self.faults.get(name) else None
        if fault == "service":
            self.invocations.append(Invocation(name, event, None, True, "injected service fault", 0.0))
            raise LambdaServiceFault()
        spec = self.specs[name]
        buffer = io.StringIO()
        started = time.perf_counter()
        with self._lock:
            saved, saved_stdout = dict(os.environ), sys.stdout
            os.environ.update(self.environment)
            os.environ.update({"AWS_LAMBDA_FUNCTION_NAME": name,
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
                os.environ.clear()
                os.environ.update(saved)
        logs = buffer.getvalue()
        seconds = time.perf_counter() - started
        self.invocations.append(Invocation(name, event, json.loads(payload), errored, logs, seconds))
        return payload, errored, logs
