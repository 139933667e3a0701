"""The driver's queue of pending units: order, retries first, packing of first attempts, dropping a config.

Pure bookkeeping (no Ray, no MLflow): ``driver.py`` decides *when* to push, take and drop; this module
decides *what* comes out next. A retry goes to the front (it runs alone, on a fresh call) so a failing
fold is retried while its config's other folds are still in flight; with ``resources.packing`` > 1, the
first attempts of further units of the same config join the taken unit (fold-batched training).
"""

from __future__ import annotations

import collections
import dataclasses

from orchestrator.spec.plan import Unit


class WorkQueue:
    """Pending :class:`~orchestrator.spec.plan.Unit` s, first in first out, retries at the front."""

    def __init__(self, packing: int = 1) -> None:
        self.packing = packing
        self._q: collections.deque[Unit] = collections.deque()

    def __len__(self) -> int:
        return len(self._q)

    def push(self, unit: Unit) -> None:
        """A first attempt, at the back."""
        self._q.append(unit)

    def retry(self, unit: Unit) -> Unit:
        """The next attempt of ``unit``, at the front; returns it."""
        nxt = dataclasses.replace(unit, attempt=unit.attempt + 1)
        self._q.appendleft(nxt)
        return nxt

    def pending(self, arm: str) -> int:
        """Units of config ``arm`` still waiting."""
        return sum(u.arm == arm for u in self._q)

    def drop(self, arm: str) -> int:
        """Remove every waiting unit of config ``arm`` (a pruned config); return how many."""
        kept = [u for u in self._q if u.arm != arm]
        n = len(self._q) - len(kept)
        self._q = collections.deque(kept)
        return n

    def take(self) -> list[Unit]:
        """The next call's units: the head, plus (first attempts only) up to ``packing - 1`` further first
        attempts of the same config, in queue order. A retry always runs alone."""
        group = [self._q.popleft()]
        if group[0].attempt != 1:
            return group
        for u in list(self._q):
            if len(group) >= self.packing:
                break
            if u.arm == group[0].arm and u.attempt == 1:
                self._q.remove(u)
                group.append(u)
        return group
