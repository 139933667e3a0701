"""What a sweep's start and ``--dry-run`` read from a store that grows (issue 26): old whole-store scan vs
the targeted lookup (``store.reuse.StoreIndex``: one query per config group).

    python benchmarks/bench_store.py                       # 1k, 10k, 100k fold runs (local SQLite)
    python benchmarks/bench_store.py --sizes 1000 10000

For each size a fresh SQLite MLflow store is filled *directly* (rows copied from one real fold run made
by ``MlflowClient``, new run ids, unit keys and groups: minutes, not training), spread over 10
experiments that mer-orch created (tagged ``mer.reuse_groups``). Then, each in a fresh client, best of
``--repeats``, CPU seconds of this process and wall seconds:

- ``scan``: ``reuse.scan_store`` (what every sweep start did before: every done fold run of the store);
- ``lookup``: ``StoreIndex(client).open()`` and ``group()`` for the 3 configs of ``smoke.yaml``, 2 of them
  with 12 stored units each (what a sweep start does now);
- ``estimate``: ``reuse.seconds_per_unit`` (the dry run's time estimate: the newest sweep's fold runs);
- ``open``: a new client's first answer (MLflow's own start-up on that store, paid by every command).

The figure that matters is the ratio of each column at 100k to its value at 1k (flat = 1).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

from mlflow.tracking import MlflowClient

from orchestrator.store import contract as C
from orchestrator.store.reuse import StoreIndex, reuse_group, scan_store, seconds_per_unit, unit_key
from orchestrator.store.tracking import prepare_experiment

N_EXPERIMENTS = 10
SWEEP_SIZE = 500  # fold runs per sweep (smoke.yaml has 36, ablation.yaml 2574)
CONFIGS = [{"model": m, "lr": 0.01, "num_classes": 3} for m in ("gcn", "ss_gn", "gts_gn")]


FOLD_TAGS = {C.KIND: C.FOLD, C.STATUS: "complete", C.DATASET: "synthme-tiny", C.ARM: "a", C.SUBJECT: "s",
             C.SEED: "0", C.UNIT_KEY: "k", C.REUSE_GROUP: "g", C.SWEEP_ID: "x", C.CONFIG_HASH: "h"}
# a finished sweep run as the driver leaves it: its units counted once (what `mer-orch ls` reads)
SWEEP_TAGS = {C.KIND: C.SWEEP, C.STATUS: "complete", C.DATASET: "synthme-tiny", C.SWEEP_ID: "x",
              C.SPEC: "filler.yaml", C.OBJECTIVE: "uf1", C.N_UNITS: str(SWEEP_SIZE),
              C.UNITS_DONE: str(SWEEP_SIZE), C.UNITS_FAILED: "0", C.UNITS_REUSED: "0", C.BEST: "0.5"}


def _template(client: MlflowClient, exp: str, tags: dict[str, str]) -> str:
    run_id = client.create_run(exp, tags=tags).info.run_id
    for m in ("accuracy", "uf1", "uar", "train_seconds"):
        client.log_metric(run_id, m, 1.0)
    client.set_terminated(run_id, "FINISHED")
    return run_id


TABLES = ("runs", "tags", "metrics", "latest_metrics")


def templates(client: MlflowClient, exp: str) -> tuple[str, str]:
    """(fold run id, sweep run id) of the two runs every filler run copies, made by ``MlflowClient``."""
    return _template(client, exp, FOLD_TAGS), _template(client, exp, SWEEP_TAGS)


def filler(start: int, stop: int, exps: list[int], fold_rows: dict, sweep_rows: dict,
           cols: dict[str, list[str]]) -> dict[str, list[tuple]]:
    """Rows (per table) of fold runs ``start`` .. ``stop - 1``, copies of the template's with their own run
    id, unit key and group (the first 24: 12 units of each of the first two smoke configs), in sweeps of
    ``SWEEP_SIZE`` consecutive runs, each closed by a finished sweep run, spread over ``exps``."""
    out: dict[str, list[tuple]] = {t: [] for t in cols}

    def copy(rows: dict, values: dict[str, str], exp: int, name: str) -> None:
        rid = uuid.uuid4().hex
        for t in cols:
            for r in rows[t]:
                r = dict(zip(cols[t], r, strict=True)) | {"run_uuid": rid}
                if t == "runs":
                    r |= {"experiment_id": exp, "name": name}
                if t == "tags" and r["key"] in values:
                    r["value"] = values[r["key"]]
                out[t].append(tuple(r[c] for c in cols[t]))

    for i in range(start, stop):
        cfg = CONFIGS[i % 2] if i < 24 else {"model": "gcn", "lr": 1e-3 + i, "num_classes": 3}
        sweep = i // SWEEP_SIZE
        exp = exps[sweep % len(exps)]
        copy(fold_rows, {C.UNIT_KEY: unit_key(cfg, 0, f"s{i}", "d"), C.REUSE_GROUP: reuse_group(cfg, "d"),
                         C.SWEEP_ID: f"sweep{sweep}"}, exp, f"r{i}")
        if (i + 1) % SWEEP_SIZE == 0:  # one finished sweep run per SWEEP_SIZE fold runs, as sweeps leave them
            copy(sweep_rows, {C.SWEEP_ID: f"sweep{sweep}"}, exp, f"sweep-{sweep}")
    return out


def fill(db: Path, n_runs: int, first_experiment: str = "e0") -> None:
    """A local SQLite store with ``n_runs`` filler fold runs (:func:`filler`) over ``first_experiment``
    and e1..e9."""
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)
    names = [first_experiment] + [f"e{i}" for i in range(1, N_EXPERIMENTS)]
    exps = [int(prepare_experiment(uri, name, db.parent / "artifacts")) for name in names]
    fold_tpl, sweep_tpl = templates(client, str(exps[0]))
    con = sqlite3.connect(db)
    cols = {t: [r[1] for r in con.execute(f"pragma table_info({t})")] for t in TABLES}

    def rows_of(run_id: str) -> dict[str, list]:
        return {t: con.execute(f"select * from {t} where run_uuid = ?", (run_id,)).fetchall() for t in cols}

    rows = filler(0, n_runs, exps, rows_of(fold_tpl), rows_of(sweep_tpl), cols)
    for t, vals in rows.items():
        con.executemany(f"insert into {t} values ({','.join('?' * len(cols[t]))})", vals)
    con.commit()
    con.close()


def _best(fn, repeats: int) -> tuple[float, float, object]:
    best = (float("inf"), float("inf"), None)
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        best = min(best, (time.process_time() - c0, time.perf_counter() - t0, out), key=lambda b: b[0])
    return best


def measure(db: Path, repeats: int) -> dict[str, tuple[float, float]]:
    """Each part on a client that has already answered once (the driver's, by the time reuse asks), and
    the first answer of a new client apart (``open``: MLflow's store start-up, paid by every command)."""
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)

    def first_answer() -> int:
        return len(MlflowClient(uri).search_experiments(max_results=1))

    def lookup() -> int:
        store = StoreIndex(client).open(write=False)
        for cfg in CONFIGS:
            store.group(reuse_group(cfg, "d"))
        return len(store.index)

    opened = _best(first_answer, repeats)
    scan = _best(lambda: len(scan_store(client)), repeats)
    look = _best(lookup, repeats)
    est = _best(lambda: seconds_per_unit(client, "synthme-tiny"), repeats)
    assert look[2] == 24, look[2]  # exactly the stored units of the sweep's configs
    assert est[2] is not None and est[2][1] > 0, est[2]
    return {"open": opened[:2], "scan": scan[:2], "lookup": look[:2], "estimate": est[:2],
            "n_scanned": scan[2]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    results = {}
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "mlflow.db"
            t0 = time.perf_counter()
            fill(db, n)
            filled = time.perf_counter() - t0
            results[n] = measure(db, args.repeats)
            r = results[n]
            print(f"{n:>7} fold runs (filled in {filled:.0f} s): open {r['open'][0]:.3f} s cpu, "
                  f"scan {r['scan'][0]:.3f} s cpu "
                  f"({r['scan'][1]:.3f} wall, {r['n_scanned']} units), lookup {r['lookup'][0]:.3f} s cpu "
                  f"({r['lookup'][1]:.3f} wall), estimate {r['estimate'][0]:.3f} s cpu "
                  f"({r['estimate'][1]:.3f} wall)", flush=True)
    lo, hi = min(results), max(results)
    for k in ("open", "scan", "lookup", "estimate"):
        print(f"{k}: {hi} / {lo} fold runs = {results[hi][k][0] / max(results[lo][k][0], 1e-6):.1f}x (cpu), "
              f"{results[hi][k][1] / max(results[lo][k][1], 1e-6):.1f}x (wall)")


if __name__ == "__main__":
    main()
