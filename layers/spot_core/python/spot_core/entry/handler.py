"""The one way to write a handler: parse the event model, set the correlation id, log with
the Lambda context, flush metrics, and return what the service returned as JSON.

    @handler(WaveEvent, metrics=True)
    def lambda_handler(event: WaveEvent, context: LambdaContext) -> WaveResult:
        return wiring().migrate_wave.run(event.migration_id, event.wave, budget(context))

An event that does not match its model raises InvalidEvent before anything is read or
changed; the whole event is never logged (the approval event carries a task token).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.middleware_factory import lambda_handler_decorator
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from ..domain.clock import Budget, SystemClock
from .events import parse_event
from .observability import logger, metrics

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[Any, LambdaContext], Any]


@lambda_handler_decorator
def _parsed(handler: Handler, event: Any, context: LambdaContext, model: type[BaseModel] | None = None,
            correlation: str | None = None) -> Any:
    parsed = parse_event(event, model) if model is not None else event
    if correlation:
        logger.set_correlation_id(getattr(parsed, correlation))
    result = handler(parsed, context)
    return result.model_dump(mode="json") if isinstance(result, BaseModel) else result


def handler(model: type[M] | None = None, *, correlation: str | None = "migration_id",
            correlation_path: str | None = None, with_metrics: bool = False) -> Callable[[Handler], Handler]:
    """``model``: the event's model (None: the raw event); ``correlation``: the attribute of the
    parsed event that is the correlation id, or ``correlation_path``: a JMESPath into the raw
    event; ``with_metrics``: the handler emits EMF metrics."""
    def decorate(function: Handler) -> Handler:
        wrapped = _parsed(function, model=model, correlation=correlation)
        wrapped = logger.inject_lambda_context(clear_state=True, log_event=False,
                                               correlation_id_path=correlation_path)(wrapped)
        return metrics.log_metrics(wrapped) if with_metrics else wrapped
    return decorate


def budget(context: LambdaContext | None) -> Budget:
    """The invocation's time left, on the system clock."""
    return Budget.of(SystemClock(), context.get_remaining_time_in_millis() if context else None)
