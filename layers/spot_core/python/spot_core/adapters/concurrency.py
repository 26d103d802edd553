"""A few calls in flight at once, for AWS APIs that answer one instance a call (the
instance's user data, its tags, an SSM command invocation)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

PER_INSTANCE_CONCURRENCY = 8  # calls in flight for APIs that take one instance a call


def concurrently(call: Callable[[T], R], items: list[T]) -> list[R]:
    """`call` on each item, PER_INSTANCE_CONCURRENCY at a time; the results in order. The first
    error is raised once every call has ended (what succeeded stays done: each call is
    idempotent, and the caller records progress only for what it knows succeeded)."""
    if len(items) <= 1:
        return [call(item) for item in items]
    with ThreadPoolExecutor(max_workers=PER_INSTANCE_CONCURRENCY) as pool:
        return list(pool.map(call, items))
