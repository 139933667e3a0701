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


def fill(db: Path, n_runs: int, first_experiment: str = "e0") -> None:
    """A store of ``n_runs`` done fold runs: 12 units of each of the first two smoke configs, the rest
    in other groups, all copies of one real run's rows, spread over ``first_experiment`` and e1..e9."""
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)
    names = [first_experiment] + [f"e{i}" for i in range(1, N_EXPERIMENTS)]
    exps = [prepare_experiment(uri, name, db.parent / "artifacts") for name in names]
    fold_tpl, sweep_tpl = _template(client, exps[0], FOLD_TAGS), _template(client, exps[0], SWEEP_TAGS)
    con = sqlite3.connect(db)
    cols = {t: [r[1] for r in con.execute(f"pragma table_info({t})")] for t in ("runs", "tags", "metrics",
                                                                              "latest_metrics")}
    def rows_of(run_id: str) -> dict[str, list]:
        return {t: con.execute(f"select * from {t} where run_uuid = ?", (run_id,)).fetchall() for t in cols}

    fold_rows, sweep_rows = rows_of(fold_tpl), rows_of(sweep_tpl)
    out: dict[str, list] = {t: [] for t in cols}
    for i in range(n_runs - 1 + n_runs // SWEEP_SIZE):
        rid = uuid.uuid4().hex
        cfg = CONFIGS[i % 2] if i < 24 else {"model": "gcn", "lr": 1e-3 + i, "num_classes": 3}
        tag_values = {C.UNIT_KEY: unit_key(cfg, 0, f"s{i}", "d"), C.REUSE_GROUP: reuse_group(cfg, "d"),
                      C.SWEEP_ID: f"sweep{i % (n_runs // SWEEP_SIZE)}"}
        if i >= n_runs - 1:  # one sweep run per SWEEP_SIZE fold runs, as sweeps leave them
            tag_values = {C.SWEEP_ID: f"sweep{i - n_runs + 1}"}
        rows = sweep_rows if i >= n_runs - 1 else fold_rows
        exp_of = int(exps[int(tag_values[C.SWEEP_ID][5:]) % N_EXPERIMENTS])
        for t in cols:
            for r in rows[t]:
                r = dict(zip(cols[t], r, strict=True))
                r["run_uuid"] = rid
                if t == "runs":
                    r["experiment_id"] = exp_of
                    r["name"] = f"r{i}"
                if t == "tags" and r["key"] in tag_values:
                    r["value"] = tag_values[r["key"]]
                out[t].append(tuple(r[c] for c in cols[t]))
    for t, vals in out.items():
        marks = ",".join("?" * len(cols[t]))
        con.executemany(f"insert into {t} values ({marks})", vals)
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
