"""Live progress of a sweep (rich): configs and folds done of total, failures, elapsed, ETA, best so far.

On a terminal a ``rich.live.Live`` panel redraws in place; otherwise (CI logs, pipes, tests) one plain line
is printed per finished config and per retried or failed fold. The end is a summary table.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from orchestrator.store import contract as C
from orchestrator.store.contract import parse_dataset_metric


def _hms(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class NullProgress:
    """The hooks the driver calls, doing nothing: a sweep run from code without a progress display."""

    def start(self, sweep_id: str, experiment: str, n_configs: int, n_folds: int) -> None: ...

    def workers(self, n: int) -> None: ...

    def note(self, msg: str) -> None:
        """A line the user must see even without a display (e.g. training on CPU although the file asks
        for GPUs): Python's logging, since there is no console here."""
        import logging

        logging.getLogger("orchestrator").warning(msg)

    def fold_done(self, ok: bool, resumed: bool = False, reused: bool = False) -> None: ...

    def folds_cancelled(self, n: int) -> None: ...

    def retry(self, arm: str, subject: str, error: str) -> None: ...

    def config_done(self, arm: str, status: str, value: float | None) -> None: ...

    def stop(self) -> None: ...


def better(a: float, b: float, direction: str) -> bool:
    """Is objective value ``a`` better than ``b`` under ``direction`` (``maximize`` | ``minimize``)?"""
    return a < b if direction == "minimize" else a > b


class SweepProgress(NullProgress):
    """Counters plus a renderer; the driver calls the ``*_done`` hooks, nothing here touches Ray.

    ``direction``: the search's (``minimize`` makes "best so far" the lowest value); grid-only sweeps
    maximise their objective (every metric here is higher-is-better).
    """

    def __init__(self, console: Console | None = None, objective: str = "uf1", direction: str = "maximize"):
        self.console = console or Console(stderr=True)
        self.objective = objective
        self.direction = direction
        self.live: Live | None = None
        self.t0 = time.monotonic()
        self.sid = self.experiment = ""
        self.n_cfg = self.n_folds = 0
        self.cfg_done = self.folds_done = self.folds_resumed = self.failed = self.retries = 0
        self.folds_reused = 0
        self.n_workers = 0
        self.best: tuple[str, float] | None = None
        self.last = ""

    # ---------------------------------------------------------------------------------------- hooks
    def start(self, sweep_id: str, experiment: str, n_configs: int, n_folds: int) -> None:
        self.sid, self.experiment, self.n_cfg, self.n_folds = sweep_id, experiment, n_configs, n_folds
        self.t0 = time.monotonic()
        if self.console.is_terminal:
            self.live = Live(self._render(), console=self.console, refresh_per_second=2, transient=False)
            self.live.start()
        else:
            self.console.print(f"sweep {sweep_id} (experiment {experiment!r}): {n_configs} configs, "
                               f"{n_folds} folds")

    def workers(self, n: int) -> None:
        self.n_workers = n
        self._update()

    def note(self, msg: str) -> None:
        """One line for the user (e.g. the pool training on CPU although the file asks for GPUs)."""
        self._line(msg)

    def fold_done(self, ok: bool, resumed: bool = False, reused: bool = False) -> None:
        """A fold has its record: trained now, found done (``resumed``) or linked to an identical unit
        the store already held (``reused``, counted apart)."""
        self.folds_done += 1
        self.folds_resumed += resumed
        self.folds_reused += reused
        self.failed += not ok
        self._update()

    def folds_cancelled(self, n: int) -> None:
        """Folds of a pruned config that will not run: they leave the total."""
        self.n_folds -= n
        self._update()

    def retry(self, arm: str, subject: str, error: str) -> None:
        self.retries += 1
        self._line(f"retry {arm}/{subject}: {error}")

    def config_done(self, arm: str, status: str, value: float | None) -> None:
        self.cfg_done += 1
        if status == "complete" and value is not None and (
                self.best is None or better(value, self.best[1], self.direction)):
            self.best = (arm, value)
        ok = status == "complete" and value is not None
        v = f"{self.objective}={value:.3f}" if ok else "no pooled value"
        self._line(f"[{self.cfg_done}/{self.n_cfg}] {arm}: {status}, {v}")

    def stop(self) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.stop()
            self.live = None

    # -------------------------------------------------------------------------------------- render
    def eta(self) -> float | None:
        trained = self.folds_done - self.folds_resumed - self.folds_reused
        if trained <= 0:
            return None
        return (time.monotonic() - self.t0) / trained * max(0, self.n_folds - self.folds_done)

    def _render(self) -> Any:
        eta = self.eta()
        head = Text.assemble(
            (f"sweep {self.sid} ", "bold"), f"· {self.experiment} · {self.n_workers} workers\n",
            f"configs {self.cfg_done}/{self.n_cfg} · folds {self.folds_done}/{self.n_folds}"
            f" (reused {self.folds_reused})",
            (f" · failed {self.failed}", "red" if self.failed else ""),
            f" · retries {self.retries} · elapsed {_hms(time.monotonic() - self.t0)}"
            f" · ETA {_hms(eta) if eta is not None else '?'}\n",
            f"best {self.objective}: " + (f"{self.best[1]:.3f} ({self.best[0]})" if self.best else "-"),
        )
        bar = ProgressBar(total=max(1, self.n_folds), completed=self.folds_done)
        return Group(head, bar, Text(self.last, style="dim"))

    def _update(self) -> None:
        if self.live is not None:
            self.live.update(self._render())

    def _line(self, msg: str) -> None:
        self.last = msg
        if self.live is not None:
            self.live.console.print(msg)
            self._update()
        else:
            self.console.print(msg, highlight=False)


def selection_lines(rows: list[dict[str, Any]], nested: dict[str, Any], objective: str,
                    direction: str = "maximize") -> list[str]:
    """The closing lines under the summary that say how a search's winner was selected (issue 13): a best
    trial of a test-selected search is labelled optimistic; a nested search prints its nested LOSO
    estimate and the choice of every outer subject."""
    out = []
    trials = [r for r in rows if r["table"] == "search" and isinstance(r.get(objective), float)]
    if trials:
        pick = min if direction == "minimize" else max
        b = pick(trials, key=lambda r: r[objective])
        out.append(f"best trial {b['arm']} ({objective} {b[objective]:.3f}): selected on the test subjects, "
                   "optimistic (the left-out subjects chose it); search.selection: nested estimates the "
                   "search without that bias")
    if nested:
        est = nested.get("estimate", {})
        v, sd = est.get(objective), est.get(f"{objective}_sd")
        val = "-" if v is None else f"{v:.3f}" + (f" ± {sd:.3f} over seeds" if sd is not None else "")
        done = "" if nested.get("complete") else " (INCOMPLETE: some outer subjects have no result)"
        out.append(f"nested LOSO estimate ({objective}, pooled over the outer test predictions of "
                   f"{nested.get('n_outer', 0)} outer subjects): {val}{done}")
        for c in nested.get("choices", []):
            params = ", ".join(f"{k[len('param_'):]}={c[k]}" for k in c if k.startswith("param_"))
            out.append(f"  outer {c['outer_subject']}: chose inner trial {c['inner_trial']} ({params}), "
                       f"{c['status']}")
    return out


def summary_table(rows: list[dict[str, Any]], objective: str, direction: str = "maximize") -> Table:
    """Arms x (table, status, folds, pooled accuracy / UF1 / UAR, per-fold mean UF1); the best row by
    ``objective`` under ``direction`` in bold green."""
    n_seeds = max((int(r["n_seeds"]) for r in rows if r.get("n_seeds")), default=1)
    seeds = f", mean ± sd over {n_seeds} seeds" if n_seeds >= 2 else ""
    # a union of datasets (composite / cross-dataset): each dataset's pooled UF1 beside the whole's
    per_dataset = list(dict.fromkeys(k for r in rows for k in r if (p := parse_dataset_metric(k))
                                     and p[1] == "uf1"))
    over = "every fold's predictions, whole and per dataset" if per_dataset else "LOSO folds"
    t = Table(title=f"sweep summary (pooled over {over}{seeds}; fold mean = mean of per-fold values)")
    cols = ("arm", "table", "status", "folds ok", "accuracy", "uf1", "uar",
            *[f"{parse_dataset_metric(k)[0]} uf1" for k in per_dataset], "fold mean uf1")  # type: ignore[index]
    for col in cols:
        t.add_column(col, justify="left" if col in ("arm", "table", "status") else "right")

    def f(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else "-"

    def pooled(r: dict[str, Any], m: str) -> str:
        sd = r.get(f"{m}_sd")
        return f"{f(r[m])} ± {sd:.3f}" if isinstance(sd, float) and isinstance(r[m], float) else f(r[m])

    pick = min if direction == "minimize" else max
    # nested-search rows score other things (inner validation folds, one outer subject): never "best"
    best = pick((r[objective] for r in rows if isinstance(r.get(objective), float)
                 and r["table"] not in C.NESTED_TABLES), default=None)
    for r in rows:
        n, nf = r.get("n_folds"), r.get("n_failed")
        folds = f"{int(n - nf)}/{int(n)}" if isinstance(n, float) and isinstance(nf, float) else "-"
        style = "bold green" if best is not None and r.get(objective) == best else (
            "red" if r["status"] in ("failed", "incomplete") else "")
        t.add_row(r["arm"], r["table"], r["status"], folds, pooled(r, "accuracy"), pooled(r, "uf1"),
                  pooled(r, "uar"), *[pooled(r, k) for k in per_dataset], f(r.get("fold_mean_uf1")),
                  style=style)
    return t
