"""Issue 18: hostile files, faults and careless users. Each case failed (traceback, hang, silent acceptance,
destroyed file or wrong result) before its fix; every bad input must now be one line and exit 2.

Search-space cases are raw YAML text (duplicate keys, aliases and non-UTF-8 bytes cannot be written with
``yaml.safe_dump``), run through the real CLI; none may start Ray or create a store.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import ray
from click.testing import CliRunner

from orchestrator.cli import main

HEAD = """\
dataset: {name: synthme-tiny, knobs: {n_subjects: 3, n_clips: 30}}
train: {epochs: 1}
"""
ARM = "grid:\n  - {name: base, table: V}\n"


def _bomb(levels: int) -> str:
    """A YAML alias bomb: each level lists the previous one 10 times (10**levels scalars once expanded)."""
    lines = ["x0: &x0 [a, a, a, a, a, a, a, a, a, a]"]
    for i in range(1, levels):
        lines.append(f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]")
    return "\n".join(lines)


def _ints(start: int) -> str:
    return ",".join(str(start + i) for i in range(100))


# (id, file body as bytes or text, substring of the one-line error)
SPEC_CASES = [
    ("non-utf8 bytes", HEAD.encode() + b"grid:\n  - {name: \xff\xfe}\n", "not UTF-8 text"),
    ("duplicate grid key", HEAD + ARM + "grid:\n  - {name: other}\n", "duplicate key 'grid'"),
    ("duplicate nested key", HEAD + "grid:\n  - {name: a, beta: 1, beta: 2}\n", "duplicate key 'beta'"),
    ("alias bomb in knobs",
     "dataset:\n  name: synthme-tiny\n  knobs:\n    " + _bomb(7).replace("\n", "\n    ") + "\n" + ARM,
     "YAML nodes"),
    ("alias count", "dataset: {name: synthme-tiny, knobs: {n_subjects: 3, noise: &a 0.1, extra: ["
     + ", ".join(["*a"] * 150) + "]}}\n" + ARM, "aliases"),
    ("template attribute access", HEAD + "grid:\n  - {product: {beta: [0.5, 1.0]}, name: 'b{beta.real}'}\n",
     "placeholder {beta.real}"),
    ("template index access", HEAD + "grid:\n  - {product: {beta: [0.5, 1.0]}, name: 'b{beta[0]}'}\n",
     "placeholder {beta[0]}"),
    ("negative dataset seed", "dataset: {name: synthme-tiny, seed: -1}\ntrain: {epochs: 1}\n" + ARM,
     "dataset.seed:"),
    ("overflowing protocol seed", HEAD + "protocol: {seed: 99999999999999999999}\n" + ARM, "protocol.seed:"),
    ("cpu_per_fold inf", HEAD + ARM + "resources: {cpu_per_fold: .inf}\n", "resources.cpu_per_fold:"),
    ("magnification inf", "dataset: {name: synthme-tiny, magnification: .inf}\n" + ARM,
     "dataset.magnification:"),
    ("step with log",
     HEAD + "search: {n_trials: 2, params: {lr: {low: 0.001, high: 0.1, step: 0.01, log: true}}}\n",
     "step and log"),
    ("log with low 0", HEAD + "search: {n_trials: 2, params: {beta: {low: 0, high: 1, log: true}}}\n",
     "log: true needs low > 0"),
    ("grid sampler too fine",
     HEAD + "search: {sampler: grid, n_trials: 2, params: {beta: {low: 0, high: 1, step: 1.0e-9}}}\n",
     "1000000001 points"),
    ("product of 1e6",
     HEAD + "grid:\n  - product: {beta: [" + _ints(0) + "], lr: [" + _ints(1) + "], batch_size: ["
     + _ints(1) + "]}\n    name: 'b{beta}-{lr}-{batch_size}'\n", "expands to 1000000 configurations"),
    ("empty subjects", HEAD + "protocol: {subjects: []}\n" + ARM, "protocol.subjects:"),
    ("exclude removes everything",
     HEAD + "grid:\n  - product: {lam: [true, false]}\n    name: 'l{lam}'\n"
     "    exclude: [{lam: true}, {lam: false}]\n",
     "removes all 2 combinations"),
    ("misspelt exclude key",
     HEAD + "grid:\n  - product: {lam: [true, false]}\n    name: 'l{lam}'\n    exclude: [{lma: true}]\n",
     "key 'lma' is not varied"),
    ("arm named like a trial",
     HEAD + "grid:\n  - {name: search-0}\nsearch: {n_trials: 2, params: {beta: {low: 0.1, high: 1}}}\n",
     "form of an Optuna trial"),
]


@pytest.mark.parametrize("body,needle", [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES])
def test_bad_search_space_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             body: str | bytes, needle: str) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "space.yaml"
    if isinstance(body, bytes):
        path.write_bytes(body)
    else:
        path.write_text(body)
    r = CliRunner().invoke(main, ["sweep", str(path), "--num-cpus", "1"])
    assert r.exit_code == 2, (r.output, r.exception)
    err = r.stderr.strip()
    assert "\n" not in err and err.startswith(f"{path}: "), err
    assert needle in err, err
    assert not ray.is_initialized()
    assert not (tmp_path / "mer-runs").exists()


# ------------------------------------------------------------------------------------------------ reports
# A sweep store written run by run in the documented layout (helpers of test_report_layout.py).


def _store(tmp: Path, experiment: str, arms: list[tuple[str, dict]], sweep_tags: dict | None = None) -> str:
    import numpy as np
    from mlflow import MlflowClient
    from test_report_layout import SUBJECTS, _log_config

    uri = f"sqlite:///{tmp}/mlflow.db"
    client = MlflowClient(uri)
    exp_id = client.create_experiment(experiment, artifact_location=str(tmp / "artifacts"))
    tags = {"mer.kind": "sweep", "mer.sweep_id": "sw1", "mer.dataset": "synthme-casme2",
            "mer.setup": "objective", **(sweep_tags or {})}
    sweep = client.create_run(exp_id, run_name="sweep", tags=tags).info.run_id
    acc = {s: a for s, a in zip(SUBJECTS, np.linspace(0.34, 0.67, len(SUBJECTS)), strict=True)}
    for i, (arm, kw) in enumerate(arms):
        work = tmp / f"arm{i}"
        work.mkdir()
        _log_config(client, exp_id, "sw1", sweep, work, arm, "V", {"model": "gts_gn", "beta": 1.0 + i},
                    {s: min(1.0, a + 0.1 * i) for s, a in acc.items()}, **kw)
    return uri


def _report(uri: str, experiment: str, out: Path | None, cwd: Path, monkeypatch) -> object:
    monkeypatch.chdir(cwd)
    args = ["report", "--experiment", experiment, "--tracking-uri", uri]
    return CliRunner().invoke(main, args + (["--out", str(out)] if out is not None else []))


@pytest.fixture(scope="module")
def two_arm_store(tmp_path_factory) -> tuple[str, Path]:
    tmp = tmp_path_factory.mktemp("store")
    return _store(tmp, "names", [("P+Q", {}), ("P Q", {}), ("L" * 300, {})]), tmp


def test_report_refuses_a_folder_it_did_not_write(two_arm_store, tmp_path, monkeypatch) -> None:
    """Item 1: --out on a user's folder deleted everything in it."""
    uri, _ = two_arm_store
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("months of work")
    r = _report(uri, "names", out, tmp_path, monkeypatch)
    assert r.exit_code == 2 and "\n" not in r.stderr.strip() and "--out" in r.stderr, r.output
    assert (out / "thesis.tex").read_text() == "months of work"
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
    # a previous report is replaced whole, and nothing else is left beside it
    fresh = tmp_path / "rep"
    assert _report(uri, "names", fresh, tmp_path, monkeypatch).exit_code == 0
    (fresh / "tables" / "stale.csv").write_text("old")
    assert _report(uri, "names", fresh, tmp_path, monkeypatch).exit_code == 0, "a report may replace a report"
    assert not (fresh / "tables" / "stale.csv").exists() and (fresh / "report.md").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "rep"]  # no temporary folder left


def test_report_file_names_are_distinct_bounded_and_inside(two_arm_store, tmp_path, monkeypatch) -> None:
    """Item 6: arms 'P+Q' and 'P Q' shared one file name; a 300-character name crashed the report."""
    uri, _ = two_arm_store
    out = tmp_path / "rep"
    r = _report(uri, "names", out, tmp_path, monkeypatch)
    assert r.exit_code == 0, r.output
    conf = sorted(p.name for p in (out / "figures").glob("confusion_*.csv"))
    assert len(conf) == 3, conf
    assert all(len(n.encode()) < 200 for n in conf)
    import pandas as pd

    a, b = (pd.read_csv(out / "figures" / n, index_col=0) for n in conf if n.startswith("confusion_P_Q"))
    assert not a.equals(b)  # the two arms' own matrices (their accuracies differ by construction)


def test_report_of_an_experiment_named_dotdot_stays_inside(tmp_path, monkeypatch) -> None:
    """Item 6: an experiment named '..' wrote its report folder outside mer-runs/reports."""
    uri = _store(tmp_path, "..", [("A", {})])
    r = _report(uri, "..", None, tmp_path, monkeypatch)
    assert r.exit_code == 0, r.output
    report = Path(r.stdout.strip().splitlines()[-1]).resolve()
    assert report.is_relative_to((tmp_path / "mer-runs" / "reports").resolve()), report
    assert not (tmp_path / "mer-runs" / "report.md").exists()


def test_report_of_failed_and_interrupted_sweeps(tmp_path, monkeypatch) -> None:
    """Item 7: every fold failed ('accuracy') and a search that had not asked a trial yet ('state')
    raised KeyError; the report must show what exists and say what is missing."""
    import optuna
    from test_report_layout import SUBJECTS

    storage = f"sqlite:///{tmp_path}/optuna.db"
    optuna.create_study(storage=storage, study_name="s-sw1")  # created, no trial asked yet
    uri = _store(tmp_path, "failing", [("dead", {"failed_subjects": tuple(SUBJECTS), "status": "failed"})],
                 {"mer.optuna_study": "s-sw1", "mer.optuna_storage": storage})
    r = _report(uri, "failing", tmp_path / "rep", tmp_path, monkeypatch)
    assert r.exit_code == 0, (r.output, r.exception)
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "dead" in text and "failed" in text


@pytest.mark.parametrize("experiment", ["..", "../../escape", "a/../../b"])
def test_experiment_artifacts_stay_in_the_artifact_folder(tmp_path: Path, experiment: str) -> None:
    """Item 6: an experiment named '..' put its artifact location outside mer-runs/artifacts."""
    from mlflow import MlflowClient

    from orchestrator.store.tracking import prepare_experiment

    uri, root = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "artifacts"
    exp_id = prepare_experiment(uri, experiment, root)
    location = MlflowClient(uri).get_experiment(exp_id).artifact_location
    assert Path(location.removeprefix("file://")).resolve().is_relative_to(root.resolve()), location


# ------------------------------------------------------------------------------------------ stale results


def test_a_corrected_label_is_a_new_sweep_with_new_config_hashes(tmp_path: Path) -> None:
    """Item 2: sweep id and config hash ignored the data, so after a label was corrected a rerun trained
    nothing and kept the old predictions. Every id now carries the dataset's content hash."""
    import dataclasses

    from orchestrator.spec import load_spec
    from orchestrator.spec.plan import grid_configs, sweep_id
    from orchestrator.sweep.inputs import load_data

    (tmp_path / "s.yaml").write_text(HEAD + ARM)
    spec = load_spec(tmp_path / "s.yaml")
    ds = load_data(spec)
    labels = ds.labels.copy()
    labels[0] = (labels[0] + 1) % ds.num_classes  # one clip re-coded in the spreadsheet
    fixed = dataclasses.replace(ds, labels=labels)
    assert load_data(spec).content_hash() == ds.content_hash()  # same data, same id: resume still works
    assert fixed.content_hash() != ds.content_hash()
    assert sweep_id(spec, fixed.content_hash()) != sweep_id(spec, ds.content_hash())
    old = {p.arm: p.config_hash for p in grid_configs(spec, ds.content_hash())}
    new = {p.arm: p.config_hash for p in grid_configs(spec, fixed.content_hash())}
    assert old.keys() == new.keys() and all(old[a] != new[a] for a in old)
    moved = dataclasses.replace(ds, landmarks=ds.landmarks + 0.5)  # landmarks re-extracted
    assert moved.content_hash() != ds.content_hash()


# ------------------------------------------------------------------------------------------- two drivers


def test_a_second_driver_of_a_sweep_is_refused_and_a_killed_one_frees_it(tmp_path: Path) -> None:
    """Item 4: two drivers of one sweep both ran. The lease in the tracking store refuses the second, and a
    driver killed with kill -9 (its pid gone) does not leave the sweep stuck."""
    import json
    import socket
    import subprocess
    import sys
    import time

    from mlflow import MlflowClient

    from mer_model.errors import InputError
    from orchestrator.sweep import lease as lease_mod
    from orchestrator.sweep.lease import Lease

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    client.create_experiment("e")  # the store exists, as prepare_experiment leaves it
    first = Lease(uri, "sw1")
    first.acquire("space.yaml")
    with pytest.raises(InputError) as err:
        Lease(uri, "sw1").acquire("space.yaml")
    assert "\n" not in str(err.value) and "being run by another driver" in str(err.value)
    first.release()
    again = Lease(uri, "sw1")
    again.acquire("space.yaml")  # free again once released...
    again._stop.set()  # ...and its driver "killed": no more beats

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # ...and when its holder is a process that no longer exists (kill -9 leaves the lease)
    value = {"host": socket.gethostname(), "pid": dead.pid, "token": "killed", "beat": time.time()}
    client.set_registered_model_tag(lease_mod.PREFIX + "sw1", lease_mod.TAG, json.dumps(value))
    taker = Lease(uri, "sw1")
    taker.acquire("space.yaml")
    taker.release()
    assert Lease(uri, "sw1").read() is None  # released: the lease itself is gone
    # a driver on another machine: held while it beats, free once its beat is older than the TTL
    other = {"host": "elsewhere", "pid": 1, "token": "x", "beat": time.time()}
    assert lease_mod.held_by_other(other, "mine")
    assert not lease_mod.held_by_other({**other, "beat": time.time() - lease_mod.TTL_S - 1}, "mine")


# ------------------------------------------------------------------------------------------ Optuna resume


def _search(storage: str, sampler: str, n: int, stop_after: int | None = None) -> list[tuple]:
    """Ask/tell as the driver does, one trial at a time (concurrent_trials 1), on a deterministic
    objective; ``stop_after``: leave the next trial RUNNING and stop, as kill -9 of the driver does."""
    from optuna.trial import TrialState

    from orchestrator.search.study import SearchState
    from orchestrator.spec import SearchSpec

    step = {"step": 0.1} if sampler == "grid" else {}
    spec = SearchSpec(n_trials=n, sampler=sampler, seed=3, concurrent_trials=1,
                      params={"beta": {"low": 0.1, "high": 1.0, **step},
                              "fusion_layer": {"choices": [1, 2, 3]}})
    state = SearchState.open(spec, storage, "s")
    while (nxt := state.next_trial()) is not None:
        trial, p = nxt
        if stop_after is not None and trial.number == stop_after:
            return []
        state.tell(trial, -((p["beta"] - 0.55) ** 2) - 0.1 * p["fusion_layer"], TrialState.COMPLETE)
    return [(t.number, t.params["beta"], t.params["fusion_layer"], t.value) for t in state.study.trials]


@pytest.mark.parametrize("sampler,n", [("random", 8), ("tpe", 13)])
def test_resumed_search_equals_the_uninterrupted_one(tmp_path: Path, sampler: str, n: int) -> None:
    """Item 3: a resumed search replayed its seeded stream from the start (trial 4 repeated trial 0).
    Random and TPE (one trial in flight, past TPE's 10 random startup trials) now resume point for point;
    see orchestrator/search/trial_seeds.py for what differs with more trials in flight."""
    whole = _search(f"sqlite:///{tmp_path}/a.db", sampler, n)
    _search(f"sqlite:///{tmp_path}/b.db", sampler, n, stop_after=4)
    resumed = _search(f"sqlite:///{tmp_path}/b.db", sampler, n)
    assert len(whole) == n and resumed == whole
    assert len({(b, f) for _, b, f, _ in whole}) > n // 2  # and the seeded points do vary


def test_resumed_grid_search_repeats_no_point(tmp_path: Path) -> None:
    """The grid sampler (Optuna's, as is) never repeats a point after a resume, and covers the same grid;
    the order of the points after the resume may differ (documented in orchestrator/search/trial_seeds.py)."""
    n = 30  # the whole grid: 10 betas x 3 layers
    whole = _search(f"sqlite:///{tmp_path}/a.db", "grid", n)
    _search(f"sqlite:///{tmp_path}/b.db", "grid", n, stop_after=7)
    resumed = _search(f"sqlite:///{tmp_path}/b.db", "grid", n)
    points = [(b, f) for _, b, f, _ in resumed]
    assert len(points) == len(set(points)) == n
    assert set(points) == {(b, f) for _, b, f, _ in whole}


def test_optuna_trials_without_runs_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 10: a deleted mlflow.db beside a kept optuna.db ran and reported Optuna values with no runs
    behind them. Now one line, exit 2, before Ray, and no empty sweep run left in the new store."""
    import optuna
    from mlflow import MlflowClient

    from orchestrator.spec import load_spec
    from orchestrator.spec.plan import sweep_id
    from orchestrator.sweep.inputs import load_data

    monkeypatch.chdir(tmp_path)
    for k in ("MLFLOW_TRACKING_URI", "MER_OPTUNA_STORAGE", "RAY_ADDRESS"):
        monkeypatch.delenv(k, raising=False)
    (tmp_path / "s.yaml").write_text(HEAD + "search: {n_trials: 2, params: {beta: {low: 0.1, high: 1}}}\n")
    spec = load_spec(tmp_path / "s.yaml")
    name = f"{spec.experiment}-{sweep_id(spec, load_data(spec).content_hash())}"
    (tmp_path / "mer-runs").mkdir()
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{tmp_path}/mer-runs/optuna.db",
                                direction="maximize")
    t = study.ask()
    t.suggest_float("beta", 0.1, 1.0)
    study.tell(t, 0.9)  # a finished trial whose runs were in the mlflow.db that is now gone
    r = CliRunner().invoke(main, ["sweep", "s.yaml", "--num-cpus", "1"])
    assert r.exit_code == 2, (r.output, r.exception)
    last = r.stderr.strip().splitlines()[-1]  # (lines before it: MLflow's own INFO log of a new store)
    assert last.startswith("s.yaml: search: ") and "no run in the tracking store" in last, r.stderr
    assert not ray.is_initialized()
    client = MlflowClient(f"sqlite:///{tmp_path}/mer-runs/mlflow.db")
    exp = client.get_experiment_by_name(spec.experiment)
    assert exp is None or not client.search_runs([exp.experiment_id])


# ---------------------------------------------------------------------------------------- unwritable stores
# chmod does not stop root, which runs these tests: the checks run as user `nobody` (setpriv).

_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _as_nobody(code: str, cwd: Path) -> subprocess.CompletedProcess:
    import os
    import shutil
    import sys

    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    env = {**os.environ, "HOME": str(cwd)}
    return subprocess.run([*_NOBODY, sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def shared_dir(tmp_path_factory) -> Path:
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="mer-adv-", dir="/tmp"))
    d.chmod(0o777)  # nobody may create files here; root-owned files inside stay read-only to it
    return d


def test_read_only_stores_are_found_before_ray(shared_dir: Path) -> None:
    """Item 8: a read-only mlflow.db (and a read-only artifact folder) were found only after training."""
    from mlflow import MlflowClient

    MlflowClient(f"sqlite:///{shared_dir}/mlflow.db").search_experiments()  # root creates the DB: 0644
    (shared_dir / "artifacts").mkdir(mode=0o755)
    code = ("from mer_model.errors import InputError\n"
            "from orchestrator.services import check_tracking, check_artifact_location\n"
            "for f in (lambda: check_tracking('sqlite:///{d}/mlflow.db'),\n"
            "          lambda: check_artifact_location('file://{d}/artifacts')):\n"
            "    try:\n        f()\n        print('ACCEPTED')\n"
            "    except InputError as e:\n        print('REFUSED', e)\n").replace("{d}", str(shared_dir))
    r = _as_nobody(code, shared_dir)
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0 and len(lines) == 2, (r.stdout, r.stderr)
    assert lines[0].startswith("REFUSED") and "mlflow.db is not writable" in lines[0]
    assert lines[1].startswith("REFUSED") and "artifacts is not writable" in lines[1]


def test_a_fold_that_cannot_be_logged_is_a_logging_failure(tmp_path: Path) -> None:
    """Item 8: a fold that trained but could not be logged escaped the actor and was reported as a dead
    worker (its run left RUNNING). The worker now says what failed."""
    import numpy as np
    from mlflow import MlflowClient

    from orchestrator.spec import load_spec
    from orchestrator.spec.plan import Unit
    from orchestrator.sweep.executor import FoldWorker, Job
    from orchestrator.sweep.inputs import load_data

    (tmp_path / "s.yaml").write_text(HEAD + ARM)
    spec = load_spec(tmp_path / "s.yaml")
    ds = load_data(spec)
    w = FoldWorker.__new__(FoldWorker)  # the actor's code without Ray: a worker whose store refuses writes
    w.ds, w.node, w.device, w.threads, w.gpu_ids, w.save_models = ds, "test", "cpu", 1, "-", False
    w.client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    subject, tr, te = ds.loso_splits()[0]
    from mer_model.config import validate_config

    cfg = validate_config({"model": "gcn", "features": "A", "lam": False, "au_loss": "none", "epochs": 1,
                           "num_classes": ds.num_classes, "num_aus": len(ds.au_names)})
    job = Job(unit=Unit(arm="A", subject=subject, fold_index=0), config=cfg, train_idx=tr, test_idx=te,
              parent_run_id="p", tags={"mer.arm": "A", "mer.subject": subject}, last_attempt=True,
              experiment_id="999")  # no such experiment
    out = w.run(job)
    assert not out.ok and out.log_failed and not out.actor_died and out.run_id is None
    assert out.error.startswith("logging the fold run failed:") and "\n" not in out.error
    assert np.isfinite(out.seconds)


# ---------------------------------------------------------------------------------------- landmark cache


@pytest.fixture(scope="module")
def casme2_root(tmp_path_factory) -> Path:
    from real_fixtures import default_clips, write_casme2

    root = tmp_path_factory.mktemp("casme2") / "CASME2"
    write_casme2(root, default_clips(n_subjects=2, clips_per_subject=1))
    return root


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_corrupt_cache_entry_is_said_and_rebuilt(casme2_root: Path, tmp_path: Path, damage: str) -> None:
    """Item 9: a truncated or empty .npz failed every later load until deleted by hand."""
    import numpy as np

    from mer_model.data import load_dataset

    first = load_dataset("casme2", setup="objective", root=casme2_root, cache_dir=tmp_path, crop_scales=())
    (entry,) = tmp_path.glob("*.npz")
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2] if damage == "truncated" else b"")
    with pytest.warns(UserWarning, match="corrupt landmark cache entry"):
        again = load_dataset("casme2", setup="objective", root=casme2_root, cache_dir=tmp_path,
                             crop_scales=())
    assert again.meta["cache_hit"] is False and "cache_rebuilt" in again.meta
    np.testing.assert_array_equal(again.landmarks, first.landmarks)
    third = load_dataset("casme2", setup="objective", root=casme2_root, cache_dir=tmp_path, crop_scales=())
    assert third.meta["cache_hit"] is True  # the rebuilt entry is whole


def test_an_unwritable_cache_folder_is_refused_before_extraction(casme2_root: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 9: an unwritable cache folder failed only after the whole (minutes-long) extraction."""
    from mer_model.data import dlib_landmarks, load_dataset
    from mer_model.errors import InputError

    def no_dlib(*args, **kwargs):
        raise AssertionError("extraction ran although its result cannot be stored")

    monkeypatch.setattr(dlib_landmarks, "extract_rows", no_dlib)
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="landmark cache folder is not writable") as err:
        load_dataset("casme2", setup="objective", root=casme2_root, cache_dir=tmp_path / "file" / "cache")
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------- hostile datasets


def _cell(root: Path, **cells) -> None:
    """Set cells of the first clip row of the CASME II fixture's coding sheet."""
    import pandas as pd

    sheet = next(root.glob("*.xlsx"))
    df = pd.read_excel(sheet, dtype=object)
    for k, v in cells.items():
        df.loc[0, k] = v
    df.to_excel(sheet, index=False)


def _apex(root: Path) -> Path:
    return root / "sub01" / "EP02_01f" / "img15.jpg"


def _loop(root: Path) -> None:
    _apex(root).unlink()
    _apex(root).symlink_to(_apex(root).name)  # a symlink to itself


def _bomb_png(root: Path) -> None:
    from PIL import Image

    Image.new("1", (10_000, 10_000)).save(_apex(root), format="PNG")  # 1e8 px in a few kB


DATA_CASES = [
    ("filename climbs out", lambda r: _cell(r, Filename="../../.."), "is not a clip folder name"),
    ("absolute filename", lambda r: _cell(r, Filename="/etc"), "is not a clip folder name"),
    ("onset after offset, no motion left", lambda r: _cell(r, OnsetFrame=21, ApexFrame=15, OffsetFrame=10),
     "no frame after Onset Frame 21"),
    ("AU that does not exist", lambda r: _cell(r, **{"Action Units": "4+99"}),
     "AU99 is not a FACS action unit"),
    ("AU3", lambda r: _cell(r, **{"Action Units": "3"}), "AU3 is not a FACS action unit"),
    ("frame is a symlink loop", _loop, "img15.jpg"),
    ("PNG decompression bomb", _bomb_png, "unreadable image"),
]


@pytest.mark.parametrize("breaker,needle", [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES])
def test_hostile_dataset_is_one_line(casme2_root: Path, tmp_path: Path, breaker, needle: str) -> None:
    """Item 11 / 14: tracebacks, reads outside the dataset root and silent repairs of real-data input."""
    import shutil

    from mer_model.data import load_dataset
    from mer_model.errors import InputError

    root = tmp_path / "CASME2"
    shutil.copytree(casme2_root, root)
    breaker(root)
    cache = tmp_path / "cache"
    with pytest.raises(InputError) as err:
        load_dataset("casme2", setup="objective", root=root, cache_dir=cache, crop_scales=())
    assert "\n" not in str(err.value) and needle in str(err.value), str(err.value)
    assert not cache.exists() or not list(cache.glob("*.npz"))  # nothing half-built


def test_a_repaired_offset_is_a_warning_the_user_sees(casme2_root: Path, tmp_path: Path) -> None:
    """Item 14: an onset after the offset was repaired silently (the repair sat in meta only)."""
    import shutil

    from mer_model.data import load_dataset

    root = tmp_path / "CASME2"
    shutil.copytree(casme2_root, root)
    _cell(root, OnsetFrame=10, ApexFrame=15, OffsetFrame=9)  # offset coded before onset; frames follow
    with pytest.warns(UserWarning, match=r"offset -> last frame 21 \(coded 9, not after onset 10\)"):
        ds = load_dataset("casme2", setup="objective", root=root, cache_dir=tmp_path / "c", crop_scales=())
    assert any("coded 9" in r for r in ds.meta["repairs"])


def test_an_orphan_trial_without_parameters_is_never_trained_as_the_default(tmp_path: Path) -> None:
    """Item 12: a trial left RUNNING with no parameters (a crash between ask and suggest) was rerun on
    every resume as the default config. It is now told FAIL and a real trial is asked instead."""
    import optuna

    from orchestrator.search.study import SearchState
    from orchestrator.spec import SearchSpec

    storage = f"sqlite:///{tmp_path}/o.db"
    optuna.create_study(study_name="s", storage=storage, direction="maximize").ask()  # no suggest
    spec = SearchSpec(n_trials=3, sampler="random", params={"beta": {"low": 0.1, "high": 1.0}})
    state = SearchState.open(spec, storage, "s")
    trial, params = state.next_trial()
    assert set(params) == {"beta"} and trial.number == 1
    states = [t.state.name for t in state.study.trials]
    assert states == ["FAIL", "RUNNING"]


def test_report_text_from_hostile_names_is_inert(tmp_path: Path, monkeypatch) -> None:
    """Also: raw <img onerror=...>, '|', newlines and remote-image links in arm names reached report.md."""
    hostile = "<img src=x onerror=alert(1)>|col\n![p](http://evil.example/p.png)"
    uri = _store(tmp_path, "hostile", [(hostile, {}), ("plain", {})])
    r = _report(uri, "hostile", tmp_path / "rep", tmp_path, monkeypatch)
    assert r.exit_code == 0, (r.output, r.exception)
    md = (tmp_path / "rep" / "report.md").read_text()
    import re

    assert "<img" not in md and not re.search(r"(?<!\\)\]\(http", md)  # no live link or remote image
    assert "&lt;img src=x onerror=alert(1)&gt;" in md  # still readable as text
    tables = [b.splitlines() for b in md.split("\n\n") if b.startswith("|")]
    assert any("onerror" in "".join(t) for t in tables)
    for t in tables:  # every row of every table has its header's columns: no '|' from a name split one
        assert len({ln.count("|") - ln.count("\\|") for ln in t}) == 1, t


# ---------------------------------------------------------------------------------------- services up


def test_services_up_on_all_interfaces_warns(tmp_path: Path) -> None:
    """Also: --host 0.0.0.0 exposes an unauthenticated MLflow server to the network: say so first."""
    import socket

    # the port stays taken during both calls: the bind check stops each before any server starts
    with socket.create_server(("0.0.0.0", 0)) as taken:
        port = taken.getsockname()[1]
        r = CliRunner().invoke(main, ["services", "up", "--host", "0.0.0.0", "--port", str(port),
                                      "--runs-dir", str(tmp_path / "runs")])
        quiet = CliRunner().invoke(main, ["services", "up", "--host", "127.0.0.1", "--port", str(port),
                                          "--runs-dir", str(tmp_path / "runs")])
    assert r.exit_code == 2 and quiet.exit_code == 2, (r.output, quiet.output)
    assert r.stderr.startswith("warning: --host 0.0.0.0: the MLflow server will be reachable from the "
                               "network, with no authentication")
    assert "warning" not in quiet.stderr


@pytest.mark.slow
def test_kill_9_of_services_up_stops_the_mlflow_server(tmp_path: Path) -> None:
    """Also: kill -9 of `mer-orch services up` left `mlflow server` (and its workers) running."""
    import signal
    import sys
    import time

    from conftest import free_port
    from conftest import procs_mentioning as _procs_mentioning

    runs, port = tmp_path / "mer-runs", free_port()
    out = tmp_path / "up.out"
    with open(out, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "services", "up", "--port",
                                 str(port), "--runs-dir", str(runs)], stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while "export MLFLOW_TRACKING_URI=" not in out.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.5)
        assert len(_procs_mentioning(str(runs))) >= 2  # `services up` and the server it started
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 60
        while _procs_mentioning(str(runs)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _procs_mentioning(str(runs)) == []
    finally:
        for pid in _procs_mentioning(str(runs)):  # never leave a server behind, even when failing
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
