"""What ``ls``, ``status``, ``report`` and ``sweep --dry-run`` cost as the store around one sweep grows
(issue 26): a real small sweep, then 1k / 10k / 100k other fold runs beside it.

    python benchmarks/bench_store_commands.py                    # 1k, 10k, 100k (local SQLite)
    python benchmarks/bench_store_commands.py --sizes 1000 10000 --repeats 2

One real sweep is trained once (``mer-orch sweep`` of a 2-arm, 3-subject, 1-epoch synthme-tiny spec, one arm
with LAM so the report reads per-fold artifacts) into a template SQLite store. For each size the template
is copied and filled *directly* with other fold and sweep runs (``bench_store.fill``: copied rows, 500
fold runs per finished sweep, a tenth of them in the real sweep's experiment, as when a spec is edited and
rerun, the rest in 9 others). After one unmeasured round on the template (imports, caches), each command
runs in this process through the CLI, best of ``--repeats`` by CPU seconds (wall in brackets):

- ``ls``: every sweep of the store (one row per sweep: it grows with the number of sweeps, by design);
- ``ls --experiment``: the real sweep's experiment only;
- ``status SWEEP_ID``: the real sweep's configs;
- ``report --sweep-id``: the whole report of the real sweep (tables, statistics, figures, HTML);
- ``sweep --dry-run``: the real spec's plan, reuse count and time estimate;
- ``sweep start (rerun)``: the real ``mer-orch sweep`` of the finished sweep: everything a sweep start reads
  and writes in the store before a first fold would be submitted (nothing is left to train, so no Ray).

The figure that matters is each command's time at the largest size over the smallest (flat = 1).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_store import _best, fill  # noqa: E402

from orchestrator.cli import main as cli  # noqa: E402
from orchestrator.store import contract as C  # noqa: E402

ARMS = [{"name": "GCN", "table": "T", "model": "gcn", "features": "A", "lam": False, "au_loss": "none",
         "baseline": True},
        {"name": "GTS-GN+LAM", "table": "T", "model": "gts_gn", "features": "B", "lam": True,
         "au_loss": "none"}]
SPEC = {"dataset": {"name": "synthme-tiny", "knobs": {"n_subjects": 3, "n_clips": 30}},
        "protocol": {"seed": 0, "retries": 0}, "train": {"epochs": 1, "batch_size": 16}, "grid": ARMS,
        "resources": {"cpu_per_fold": 1}, "tracking": {"experiment": "bench"}}


def real_sweep(d: Path, uri: str | None = None) -> tuple[Path, Path, str]:
    """(spec file, template SQLite store, sweep id) of one real sweep trained into ``d``'s template store
    (or into the tracking store ``uri``)."""
    spec = d / "bench.yaml"
    spec.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    db = d / "template.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri or f"sqlite:///{db}"}
    env.pop("RAY_ADDRESS", None)
    subprocess.run([sys.executable, "-m", "orchestrator.cli", "sweep", str(spec), "--num-cpus", "2"],
                   cwd=d, env=env, capture_output=True, text=True, check=True)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("bench").experiment_id
    [sweep] = C.search_runs(client, exp, C.run_filter(C.SWEEP))
    return spec, db, sweep.data.tags[C.SWEEP_ID]


def _invoke(args: list[str]) -> None:
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, (args, r.output[-2000:])


def measure(spec: Path, uri: str, sid: str, out: Path, repeats: int) -> dict[str, tuple[float, float]]:
    """(CPU, wall) seconds of each command against the tracking store ``uri``."""
    os.environ["MLFLOW_TRACKING_URI"] = uri
    commands = {"ls": ["ls"], "ls --experiment": ["ls", "--experiment", "bench"], "status": ["status", sid],
                "report": ["report", "--experiment", "bench", "--sweep-id", sid, "--out", str(out)],
                "dry-run": ["sweep", str(spec), "--dry-run"],
                # the real command on the finished sweep: store, lease, environment record, reuse and
                # resume lookups, final tables, everything a start does up to the first fold but Ray
                "sweep start (rerun)": ["sweep", str(spec)]}
    return {name: _best(lambda a=args: _invoke(a), repeats)[:2] for name, args in commands.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        spec, template, sid = real_sweep(Path(tmp))
        print(f"real sweep {sid} trained into the template store", flush=True)
        measure(spec, f"sqlite:///{template}", sid, Path(tmp) / "warm-up", 1)
        for n in args.sizes:
            db = Path(tmp) / f"store-{n}.db"
            shutil.copy(template, db)
            t0 = time.perf_counter()
            fill(db, n, first_experiment="bench")
            results[n] = r = measure(spec, f"sqlite:///{db}", sid, Path(tmp) / f"report-{n}", args.repeats)
            cells = ", ".join(f"{k} {c:.2f} s cpu ({w:.2f} wall)" for k, (c, w) in r.items())
            print(f"{n:>7} other fold runs (filled in {time.perf_counter() - t0:.0f} s): {cells}", flush=True)
            db.unlink()
    lo, hi = min(results), max(results)
    for k in results[lo]:
        print(f"{k}: {hi} / {lo} = {results[hi][k][0] / max(results[lo][k][0], 1e-6):.2f}x (cpu), "
              f"{results[hi][k][1] / max(results[lo][k][1], 1e-6):.2f}x (wall)")


if __name__ == "__main__":
    main()
