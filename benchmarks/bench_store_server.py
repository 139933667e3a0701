"""The store-size benchmark against the cluster recipe's store: PostgreSQL behind ``mlflow server`` (HTTP),
on loopback (issue 26). The local-SQLite figures are ``bench_store.py`` and ``bench_store_commands.py``.

    python benchmarks/bench_store_server.py                          # 1k, 10k, 100k fold runs
    python benchmarks/bench_store_server.py --sizes 1000 10000 --index

A throw-away PostgreSQL (``tests/pg_server.py``: ``initdb`` into /tmp, 127.0.0.1 only) and one
``mlflow server`` over it with proxied artifacts, as ``cluster/gpu.yaml`` runs them on the head node. One
real sweep (``bench_store_commands.SPEC``) is trained through the server; then the store *grows*: filler
fold and sweep runs (``bench_store.filler``: copies of two runs made through the server, 500 fold runs per
finished sweep, over the real sweep's experiment and 9 others) are written straight into PostgreSQL with
``COPY`` up to each size, and at each size, over HTTP, best of ``--repeats`` by CPU seconds of this process
(wall in brackets; the server's own CPU is not in the CPU column, so read the wall one):

- ``lookup``: a sweep start's reuse lookup (``StoreIndex`` + one query per config, 3 configs);
- ``ls``, ``ls --experiment``, ``status``, ``report --sweep-id``, ``sweep --dry-run``: as in
  ``bench_store_commands.py``.

``--index`` measures the largest size again after ``CREATE INDEX ON tags (key, value)``, the index mer-orch
makes itself on local SQLite stores and leaves to a server database's owner.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests")]
import pg_server  # noqa: E402
from bench_store import CONFIGS, N_EXPERIMENTS, TABLES, _best, filler, templates  # noqa: E402
from bench_store_commands import measure, real_sweep  # noqa: E402

from orchestrator.store.reuse import StoreIndex, reuse_group  # noqa: E402
from orchestrator.store.tracking import prepare_experiment  # noqa: E402

PG_PORT, MLFLOW_PORT = 55432, 55500


def start_server(pg: pg_server.Postgres, artifacts: Path, log: Path) -> subprocess.Popen:
    """``mlflow server`` over ``pg``'s database ``mlflow``, proxied artifacts, loopback, its own group."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    argv = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", pg.url("mlflow"),
            "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(MLFLOW_PORT),
            "--workers", "1"]
    proc = subprocess.Popen(argv, stdout=log.open("a"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{MLFLOW_PORT}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(1)
    os.killpg(proc.pid, signal.SIGKILL)
    sys.exit(f"mlflow server did not answer in 240 s; see {log}")


class Grower:
    """Filler runs written straight into the server's PostgreSQL database, in steps."""

    def __init__(self, pg: pg_server.Postgres, uri: str) -> None:
        import psycopg

        client = MlflowClient(uri)
        names = ["bench"] + [f"e{i}" for i in range(1, N_EXPERIMENTS)]
        self.exps = [int(prepare_experiment(uri, name, None)) for name in names]
        fold_tpl, sweep_tpl = templates(client, str(self.exps[0]))
        self.con = psycopg.connect(pg.url("mlflow", "postgresql"), autocommit=False)
        self.cols = {t: [r[0] for r in self.con.execute(
            "select column_name from information_schema.columns where table_name = %s order by "
            "ordinal_position", (t,))] for t in TABLES}
        self.fold_rows, self.sweep_rows = (self._rows(r) for r in (fold_tpl, sweep_tpl))
        self.n = 0

    def _rows(self, run_id: str) -> dict[str, list]:
        return {t: self.con.execute(f"select * from {t} where run_uuid = %s", (run_id,)).fetchall()
                for t in TABLES}

    def grow_to(self, n: int) -> None:
        rows = filler(self.n, n, self.exps, self.fold_rows, self.sweep_rows, self.cols)
        with self.con.cursor() as cur:
            for t in TABLES:  # runs first: the other tables reference it
                with cur.copy(f"COPY {t} ({', '.join(self.cols[t])}) FROM STDIN") as cp:
                    for row in rows[t]:
                        cp.write_row(row)
        self.con.commit()
        self.con.execute("ANALYZE")
        self.con.commit()
        self.n = n


def lookup(uri: str, repeats: int) -> tuple[float, float]:
    client = MlflowClient(uri)

    def once() -> None:
        store = StoreIndex(client).open(write=False)
        for cfg in CONFIGS:
            store.group(reuse_group(cfg, "d"))
        assert len(store.index) == 24, len(store.index)  # exactly the stored units of those configs

    return _best(once, repeats)[:2]


def report_row(n: int | str, r: dict[str, tuple[float, float]]) -> None:
    cells = ", ".join(f"{k} {c:.2f} s cpu ({w:.2f} wall)" for k, (c, w) in r.items())
    print(f"{n:>7} filler fold runs: {cells}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--index", action="store_true")
    args = ap.parse_args()
    pg = pg_server.start(("mlflow",), PG_PORT)
    tmp = Path(tempfile.mkdtemp(prefix="mer-bench-server-"))
    server = start_server(pg, tmp / "artifacts", tmp / "mlflow.log")
    uri = f"http://127.0.0.1:{MLFLOW_PORT}"
    try:
        os.environ["MLFLOW_TRACKING_URI"] = uri
        spec, _, sid = real_sweep(tmp, uri)
        grower, results = Grower(pg, uri), {}
        measure(spec, uri, sid, tmp / "warm-up", 1)
        for n in sorted(args.sizes):
            t0 = time.perf_counter()
            grower.grow_to(n)
            print(f"grown to {n} in {time.perf_counter() - t0:.0f} s", flush=True)
            results[n] = {"lookup": lookup(uri, args.repeats), **measure(spec, uri, sid, tmp / f"r{n}",
                                                                            args.repeats)}
            report_row(n, results[n])
        if args.index:
            grower.con.execute("CREATE INDEX IF NOT EXISTS mer_tags_key_value ON tags (key, value)")
            grower.con.commit()
            top = max(results)
            report_row(f"{top} + index", {"lookup": lookup(uri, args.repeats),
                                          **measure(spec, uri, sid, tmp / "ri", args.repeats)})
        lo, hi = min(results), max(results)
        for k in results[lo]:
            print(f"{k}: {hi} / {lo} = {results[hi][k][1] / max(results[lo][k][1], 1e-6):.2f}x (wall)")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        pg_server.stop(pg)


if __name__ == "__main__":
    main()
