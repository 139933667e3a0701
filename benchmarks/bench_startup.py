"""Fixed start-up of a local sweep, part by part: imports, Ray start, actors importing torch and MLflow,
store creation, and the whole command on a sweep that does almost nothing.

    python benchmarks/bench_startup.py                 # every part 3 times, fresh processes, ABAB order
    python benchmarks/bench_startup.py --repeats 1 --no-sweep   # the parts only

One round can be a cold-cache round (seen: the bare imports 6.7 s instead of 3.1 s, a ratio of 2.6x
instead of 4.5x), so the ratio needs ``--repeats 2`` or more.

Each part runs in its own fresh Python process (nothing imported yet; the OS file cache is warm after the
first round, as on a machine that has run a sweep before) and prints its seconds. The best of
``--repeats`` rounds (least CPU of the whole process tree) is kept, with wall and CPU seconds and the
1-minute load average, because on a shared box the wall clock is mostly other people's work.
The parts, in the order a sweep meets them:

- ``import orchestrator.cli``: what ``mer-orch`` imports before it parses the command line;
- ``import orchestrator.sweep.driver``: a sweep's imports before Ray starts (plus torch, mlflow, ray, optuna
  alone, to see who pays);
- ``ray.init`` of a local instance (2 CPUs, no dashboard, loopback, its own temp dir) and ``ray.shutdown``;
- two actors started and answering a ping: bare, and importing torch + ``MlflowClient`` in ``__init__``
  as ``orchestrator.sweep.executor.FoldWorker`` does;
- store creation: a new SQLite MLflow tracking store + experiment, a new SQLite Optuna study;
- the whole ``python -m orchestrator.cli sweep`` of ``search_spaces/smoke.yaml`` cut to one arm, one seed,
  2 subjects x 20 clips (2 LOSO folds, the fewest there are) x 1 epoch: command to exit, into a new store
  (a new home: the first sweep of a project, which pays MLflow's schema migrations) and into an existing
  one (a second sweep, another seed, in the same home: every later sweep of a project);
- the start-up ratio (issue 26): that command's wall time over ``import torch, mlflow, ray, optuna``'s, in
  the same rounds. Both are timed the same way, as whole commands (process start to exit, seen from the
  parent: what a user waits for); the ratio over the imports timed inside their process (no interpreter
  start, no exit) is printed beside it, because the bare imports' own exit costs ~1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
_T = "import time, os; t0 = time.perf_counter(); c0 = time.process_time()\n"
_END = "\nprint({'wall': time.perf_counter() - t0, 'cpu': time.process_time() - c0})"
RAY = ("import ray\nray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,"
       " configure_logging=False)\nt1 = time.perf_counter()\n{body}\n"
       "t2 = time.perf_counter(); ray.shutdown()\n"
       "print({{'wall': t1 - t0, 'actors': t2 - t1, 'shutdown': time.perf_counter() - t2}})")
WORKER = ("@ray.remote(num_cpus=1)\nclass W:\n    def __init__(self):\n{imports}\n    def ping(self):\n"
          "        return 1\nray.get([a.ping.remote() for a in [W.remote() for _ in range(2)]])")
BARE = "import torch, mlflow, ray, optuna"  # the issue-26 baseline: the libraries alone, nothing of ours
WHOLE = "whole sweep command (2 folds, 1 epoch), new store"
AGAIN = "whole sweep command (2 folds, 1 epoch), existing store"
PARTS = {
    "import orchestrator.cli": _T + "import orchestrator.cli" + _END,
    "import orchestrator.sweep.driver": _T + "import orchestrator.sweep.driver" + _END,
    BARE: _T + "import torch, mlflow, ray, optuna" + _END,
    "import torch": _T + "import torch" + _END,
    "import mlflow": _T + "import mlflow" + _END,
    "import ray": _T + "import ray" + _END,
    "import optuna": _T + "import optuna" + _END,
    "ray.init + 2 bare actors": _T + RAY.format(body=WORKER.format(imports="        pass")),
    "ray.init + 2 actors importing torch, MlflowClient": _T + RAY.format(body=WORKER.format(
        imports="        import torch\n        from mlflow.tracking import MlflowClient")),
    "MLflow SQLite store + experiment": "import mlflow\n" + _T + (
        "from mlflow.tracking import MlflowClient\n"
        "MlflowClient('sqlite:///' + os.environ['D'] + '/m.db').create_experiment('x')") + _END,
    "Optuna SQLite study": "import optuna\n" + _T + (
        "optuna.create_study(storage='sqlite:///' + os.environ['D'] + '/o.db')") + _END,
}


def _env(tmp: Path) -> dict[str, str]:
    """Loopback-only local Ray in its own temp dir (stack notes), no tracking servers inherited."""
    drop = ("MLFLOW_TRACKING_URI", "MER_OPTUNA_STORAGE", "RAY_ADDRESS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(RAY_TMPDIR=str(tmp / "ray"), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               RAY_USAGE_STATS_ENABLED="0")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _children_cpu() -> float:
    """CPU seconds of every reaped descendant so far: a part's whole process tree (Ray's GCS, raylet and
    workers included, reaped by their parents) once its process has exited. On an idle 2-core box the
    part's wall time is at least this / 2: a floor that other people's load on a shared box cannot inflate.
    """
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_part(code: str, tmp: Path) -> dict[str, float]:
    d = Path(tempfile.mkdtemp(dir=tmp))
    t, c0 = time.perf_counter(), _children_cpu()
    res = subprocess.run([sys.executable, "-c", code], env={**_env(tmp), "D": str(d)}, cwd=d,
                         capture_output=True, text=True)
    whole = time.perf_counter() - t
    if res.returncode != 0:
        sys.exit(f"part failed:\n{code}\n{res.stderr[-2000:]}")
    out = eval(res.stdout.strip().splitlines()[-1])  # a dict literal printed by the part itself
    return {**out, "whole": whole, "tree_cpu": _children_cpu() - c0}


def run_sweep(tmp: Path, home: Path | None = None, seed: int = 0) -> dict[str, float]:
    """The real command on smoke.yaml cut to almost no work: its wall time is the fixed start-up + exit.
    ``home``: a folder an earlier call used (its store exists); ``seed``: another seed is another sweep."""
    raw = yaml.safe_load((ROOT / "search_spaces" / "smoke.yaml").read_text())
    raw["dataset"] = {**raw["dataset"], "name": "synthme-tiny", "knobs": {"n_subjects": 2, "n_clips": 20}}
    raw["train"] = {**raw.get("train", {}), "epochs": 1}
    raw["grid"] = raw["grid"][:1]
    raw["protocol"] = {**raw["protocol"], "seeds": [seed]}  # 1 arm x 1 seed x 2 subjects: the fewest LOSO has
    raw.pop("search", None), raw.pop("storage", None)
    d = home or Path(tempfile.mkdtemp(dir=tmp))
    (d / "s.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    t, c0 = time.perf_counter(), _children_cpu()
    res = subprocess.run([sys.executable, "-m", "orchestrator.cli", "sweep", "s.yaml", "--num-cpus", "2"],
                         env=_env(tmp), cwd=d, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"sweep failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return {"whole": time.perf_counter() - t, "tree_cpu": _children_cpu() - c0, "home": str(d)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-sweep", action="store_true")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    rounds: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for _ in range(args.repeats):
            for name, code in PARTS.items():
                rounds.setdefault(name, []).append({**run_part(code, tmp), "load1": os.getloadavg()[0]})
            if not args.no_sweep:
                first = run_sweep(tmp)
                rounds.setdefault(WHOLE, []).append({**first, "load1": os.getloadavg()[0]})
                again = run_sweep(tmp, Path(first["home"]), seed=1)
                rounds.setdefault(AGAIN, []).append({**again, "load1": os.getloadavg()[0]})
    best = {k: min(v, key=lambda r: r["tree_cpu"]) for k, v in rounds.items()}
    if args.json:
        args.json.write_text(json.dumps({"best": best, "rounds": rounds}, indent=1))
    print(f"Start-up parts, best of {args.repeats} fresh processes ({os.cpu_count()} CPUs)\n")
    print("| part | wall s, inside the process | wall s, whole process | CPU s, main process | "
          "CPU s, whole process tree | actors s (wall) | shutdown s | 1-min load of that run |")
    print("|---|---|---|---|---|---|---|---|")
    for k, r in best.items():
        cells = [f"{r[c]:.2f}" if c in r else "" for c in ("wall", "whole", "cpu", "tree_cpu", "actors",
                                                            "shutdown")]
        print(f"| {k} | " + " | ".join(cells) + f" | {r['load1']:.1f} |")
    b = best[BARE]
    for name in (WHOLE, AGAIN):  # the issue-26 figure: the whole command over the bare imports, same rounds
        if name in best:
            w = best[name]
            print(f"\nstart-up ratio, {name.split(', ')[-1]}: whole command / `{BARE}` as a whole command "
                  f"= **{w['whole'] / b['whole']:.2f}x** wall ({w['whole']:.2f} s / {b['whole']:.2f} s); "
                  f"over the imports timed inside their process {w['whole'] / b['wall']:.2f}x; "
                  f"{w['tree_cpu'] / b['tree_cpu']:.2f}x CPU of the process tree")


if __name__ == "__main__":
    main()
