"""Short-lived memory of a warm execution environment: values kept for a few seconds, so a
burst of events reads what changes slowly (a VPC's subnets, the pools interrupted lately)
once instead of once per event, and never relies on it for longer than `seconds`."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, seconds: float, now: Callable[[], float] = time.monotonic):
        self.seconds, self.now = seconds, now
        self._items: dict[K, tuple[float, V]] = {}

    def get(self, key: K, load: Callable[[], V]) -> V:
        """The value kept for `key`, or `load()`'s (kept from now on)."""
        kept = self._items.get(key)
        if kept is not None and self.now() - kept[0] < self.seconds:
            return kept[1]
        value = load()
        self._items[key] = (self.now(), value)
        return value

    def peek(self, key: K) -> V | None:
        """The value kept for `key` if it is still fresh (no load)."""
        kept = self._items.get(key)
        return kept[1] if kept is not None and self.now() - kept[0] < self.seconds else None

    def clear(self) -> None:
        self._items.clear()
