"""Reuse inside a running sweep (``orchestrator/store/reuse.py`` finds done units in the store): which
unit of this sweep is linked to a stored result, which waits for an identical unit of this sweep that is
queued or training (its *owner*), and which trains.

A unit's identity is its unit key (config, training seed, subject, data). The driver asks :meth:`place`
for every unit it opens and tells :meth:`release` every final record; it does the linking, queueing and
finalising itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.spec.plan import Unit
from orchestrator.store.contract import FoldRecord
from orchestrator.sweep.results import ConfigState

Placement = Literal["link", "wait", "train"]


@dataclass
class ReuseLinks:
    """The store's done units by unit key, the owner of each key in this sweep, the units waiting for it."""

    enabled: bool = True
    data_hash: str = ""
    store: Any = None  # store.reuse.StoreIndex: the store's done units, looked up config by config
    owners: dict[str, Unit] = field(default_factory=dict)
    waiting: dict[str, list[tuple[ConfigState, Unit]]] = field(default_factory=dict)

    @property
    def index(self) -> dict[str, Any]:
        """Unit key -> the stored complete fold run (read only while reuse is on)."""
        return self.store.index

    def open(self, client: Any, enabled: bool, data_hash: str) -> None:
        """The store's done units, when reuse is on: older experiments scanned once, the others asked one
        query per config as its units are placed (``store.reuse.StoreIndex``)."""
        from orchestrator.store.reuse import StoreIndex

        self.enabled, self.data_hash = enabled, data_hash
        if enabled:
            self.store = StoreIndex(client).open()

    def look_up(self, st: ConfigState) -> None:
        """The store's done units of ``st``'s config (one query, before its units are placed)."""
        if self.enabled:
            self.store.group(self.group(st))

    def group(self, st: ConfigState) -> str:
        from orchestrator.store.reuse import reuse_group

        return reuse_group(st.plan.config, self.data_hash)

    def key(self, st: ConfigState, u: Unit) -> str:
        from orchestrator.store.reuse import unit_key

        # the training seed: the protocol seed under the shared scheme (every stored key unchanged), the
        # unit's own under per_unit (a per_unit unit never links to a shared-scheme result)
        return unit_key(st.plan.config, u.train_seed, u.subject, self.data_hash)

    def place(self, st: ConfigState, u: Unit) -> tuple[Placement, Any]:
        """``("link", stored run)`` when the store holds its result; ``("wait", None)`` when an identical
        unit of this sweep is queued or training; else ``("train", None)``, and a grid arm's unit becomes
        the owner its duplicates wait for (grid arms are never pruned, so an owner always finishes)."""
        key = self.key(st, u)
        if self.enabled and key in self.index:
            return "link", self.index[key]
        if self.enabled and key in self.owners:
            self.waiting.setdefault(key, []).append((st, u))
            return "wait", None
        if self.enabled and st.trial is None:
            self.owners[key] = u
        return "train", None

    def linked(self, st: ConfigState, u: Unit, run: Any) -> None:
        """``u`` now has a complete fold run of its own (linked): later configs link to it."""
        self.index[self.key(st, u)] = run

    def release(self, st: ConfigState, u: Unit, rec: FoldRecord, get_run: Callable[[str], Any]
                ) -> list[tuple[ConfigState, Unit, Any]]:
        """``u`` has its final record: a complete one joins the index (a config opened later, e.g. an
        Optuna trial, links to it). Returns the units that waited for ``u`` as owner, each with the run to
        link it to, or None when the owner failed (it trains itself)."""
        key = self.key(st, u)
        if not self.enabled:
            return []
        done = rec.ok and rec.run_id is not None
        if done:
            self.index[key] = get_run(rec.run_id)
        owner = self.owners.get(key)
        if owner is None or (owner.arm, owner.seed, owner.subject) != (u.arm, u.seed, u.subject):
            return []  # not an owner (a retry of an owner has a higher attempt: compare the unit, not it)
        del self.owners[key]
        return [(wst, wu, self.index[key] if done else None) for wst, wu in self.waiting.pop(key, [])]
