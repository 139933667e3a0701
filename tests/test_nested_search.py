"""Nested LOSO selection (issue 13): inner folds never hold the outer subject; a small nested sweep is killed
with ``kill -9`` mid-search and rerun: it finishes with no duplicate runs, every inner run's training and
validation subjects (MLflow tags) exclude its outer subject, one chosen-params record per outer subject
(the best trial of that subject's own study), and the nested estimate equals scikit-learn's metric on the
outer test predictions (mean over seeds)."""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from sklearn.metrics import f1_score

from mer_model.errors import InputError
from orchestrator.spec import InnerSpec, parse_spec
from orchestrator.spec.folds import inner_folds, outer_fold
from orchestrator.spec.plan import sweep_id

SUBJECTS = ["s1", "s2", "s3", "s4"]
IDX = {s: np.arange(i * 5, i * 5 + 5) for i, s in enumerate(SUBJECTS)}  # 5 samples per subject


@pytest.mark.parametrize("inner", [InnerSpec(), InnerSpec(scheme="group_kfold", k=3),
                                   InnerSpec(scheme="group_kfold", k=2), InnerSpec(scheme="loso")])
def test_inner_folds_are_grouped_and_never_hold_the_outer_subject(inner: InnerSpec) -> None:
    if inner.k > 3 and inner.scheme == "group_kfold":  # default k=5 with 3 inner subjects
        with pytest.raises(InputError, match=r"space.yaml: search.inner.k: 5 .*allowed: 2..3"):
            inner_folds(IDX, "s1", inner, "space.yaml")
        return
    for outer in SUBJECTS:
        f = inner_folds(IDX, outer, inner)
        others = set(SUBJECTS) - {outer}
        assert len(f.ids) == (3 if inner.scheme == "loso" else inner.k)
        vals = [set(f.subjects[i][1]) for i in f.ids]
        assert set().union(*vals) == others and sum(map(len, vals)) == 3  # each subject validated once
        for i in f.ids:
            train, val = f.subjects[i]
            assert set(train) | set(val) == others and not set(train) & set(val)
            tr, te = f.splits[i]
            assert set(tr) == set(np.concatenate([IDX[s] for s in train]))
            assert set(te) == set(np.concatenate([IDX[s] for s in val]))
            assert not set(IDX[outer]) & (set(tr) | set(te))  # no sample of the outer subject anywhere
            assert f.tags(i)["mer.outer_subject"] == outer
        o = outer_fold(IDX, outer)
        assert o.subjects[outer] == (sorted(others), [outer]) and set(o.splits[outer][1]) == set(IDX[outer])


def test_test_selection_keeps_the_sweep_id_and_nested_changes_it() -> None:
    search = {"n_trials": 2, "params": {"lr": {"choices": [0.1]}}}
    base = {"dataset": {"name": "synthme-tiny"}, "search": search}
    plain = parse_spec(base, "x")
    explicit = parse_spec({**base, "search": {**base["search"], "selection": "test"}}, "x")
    nested = parse_spec({**base, "search": {**base["search"], "selection": "nested"}}, "x")
    assert sweep_id(plain) == sweep_id(explicit) != sweep_id(nested)


# ---------------------------------------------------------------------------------------------- slow

SPEC = {
    "dataset": {"name": "synthme-tiny", "knobs": {"n_subjects": 3, "n_clips": 30}},
    "protocol": {"seeds": [0, 1], "objective": "uf1", "retries": 0},
    "model": {"model": "ss_gn", "features": "A", "lam": False, "au_loss": "none"},
    "train": {"epochs": 4, "batch_size": 16},  # long enough for the kill to land inside the search
    "grid": [],
    "search": {"name": "nest", "sampler": "tpe", "n_trials": 2, "concurrent_trials": 1,
               "params": {"lr": {"choices": [0.01, 1.0e-6]}},
               "selection": "nested", "inner": {"scheme": "group_kfold", "k": 2}},
    "resources": {"cpu_per_fold": 1},
    "tracking": {"experiment": "t-nested"},
}
N_OUTER, N_INNER, N_SEEDS, N_TRIALS = 3, 2, 2, 2
N_UNITS = N_OUTER * (N_TRIALS * N_INNER + 1) * N_SEEDS


def _a_trial_has_a_fold(db: Path) -> bool:
    """Read-only SQL (see test_search_kill_resume): has any inner trial reported a fold yet?"""
    if not db.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("select count(*) from trial_intermediate_values").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def _csv(client: MlflowClient, run_id: str, path: str, tmp: Path) -> list[dict[str, str]]:
    local = client.download_artifacts(run_id, path, str(tmp))
    return list(csv.DictReader(io.StringIO(Path(local).read_text())))


def _fold_runs(client: MlflowClient, exp_id: str) -> list:
    return client.search_runs([exp_id], "tags.`mer.kind` = 'fold'", max_results=5000)


@pytest.mark.slow
def test_nested_sweep_killed_and_rerun(tmp_path: Path, start_sweep) -> None:
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    proc = start_sweep(tmp_path)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
        if _a_trial_has_a_fold(tmp_path / "mer-runs" / "optuna.db"):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read() if proc.stdout else ""
    time.sleep(3)  # a worker may still be logging the fold it had finished
    client = MlflowClient(f"sqlite:///{tmp_path / 'mer-runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("t-nested").experiment_id
    done_before = [r for r in _fold_runs(client, exp)
                   if r.data.tags.get("mer.status") == "complete" and r.info.status == "FINISHED"]
    assert 0 < len(done_before) < N_UNITS

    proc2 = start_sweep(tmp_path)
    out, _ = proc2.communicate(timeout=600)
    assert proc2.returncode == 0, out
    trained = int(re.search(r"(\d+) folds trained by this run", " ".join(out.split())).group(1))
    assert trained == N_UNITS - len(done_before)  # nothing finished ran again
    folds = _fold_runs(client, exp)
    keys = [(f.data.tags["mer.arm"], f.data.tags["mer.seed"], f.data.tags["mer.subject"]) for f in folds]
    assert len(keys) == len(set(keys)) == N_UNITS  # no duplicate runs
    assert {f.info.run_id for f in done_before} <= {f.info.run_id for f in folds}
    _check_inner_runs(folds)
    _check_choices_and_estimate(client, exp, folds, tmp_path)
    _check_report(client, exp, tmp_path)


def _check_report(client: MlflowClient, exp: str, tmp: Path) -> None:
    from orchestrator.report.build import build_report

    sweep = next(r for r in client.search_runs([exp], "tags.`mer.kind` = 'sweep'"))
    md = build_report("t-nested", f"sqlite:///{tmp / 'mer-runs' / 'mlflow.db'}", tmp / "report").read_text()
    assert f"**nested LOSO**: {sweep.data.metrics['nested_uf1']:.4f}" in md
    assert "table_nested" not in md and "**LOSO subjects**: 3" in md  # inner fold ids are no subjects


def _check_inner_runs(folds: list) -> None:
    for f in folds:
        t = f.data.tags
        outer, test = t["mer.outer_subject"], t["mer.test_subjects"]
        train = t["mer.train_subjects"].split(",")
        assert outer not in train and not set(train) & set(test.split(","))
        if t["mer.arm"].endswith("-chosen"):
            assert test == outer == t["mer.subject"] and sorted(train) == sorted({"s1", "s2", "s3"} - {outer})
        else:
            assert outer not in test.split(",") and t["mer.subject"] == f"{outer}/{test.replace(',', '+')}"


def _check_choices_and_estimate(client: MlflowClient, exp: str, folds: list, tmp: Path) -> None:
    runs = client.search_runs([exp], "tags.`mer.kind` = 'config'", max_results=1000)
    chosen = [r for r in runs if r.data.tags.get("mer.nested") == "chosen"]
    assert sorted(r.data.tags["mer.outer_subject"] for r in chosen) == ["s1", "s2", "s3"]  # one record each
    storage = f"sqlite:///{tmp / 'mer-runs' / 'optuna.db'}"
    for r in chosen:
        study = optuna.load_study(study_name=r.data.tags["mer.optuna_study"], storage=storage)
        assert len(study.trials) == N_TRIALS and r.data.tags["mer.optuna_study"].endswith(
            f"-outer-{r.data.tags['mer.outer_subject']}")
        assert int(r.data.tags["mer.inner_best_trial"]) == study.best_trial.number
        assert float(r.data.params["lr"]) == study.best_trial.params["lr"]
    sweep = next(r for r in client.search_runs([exp], "tags.`mer.kind` = 'sweep'"))
    per_seed = []
    for seed in ("0", "1"):
        yt, yp = [], []
        for f in folds:
            if f.data.tags["mer.arm"].endswith("-chosen") and f.data.tags["mer.seed"] == seed:
                rows = _csv(client, f.info.run_id, "predictions.csv", tmp / f.info.run_id)
                yt += [int(p["y_true"]) for p in rows]
                yp += [int(p["y_pred"]) for p in rows]
        per_seed.append(f1_score(yt, yp, average="macro"))
    assert sweep.data.metrics["nested_uf1"] == pytest.approx(np.mean(per_seed), abs=1e-9)
    choices = _csv(client, sweep.info.run_id, "tables/nested_choices.csv", tmp / "sweep")
    assert [c["outer_subject"] for c in choices] == ["s1", "s2", "s3"]
    assert all(c["status"] == "complete" for c in choices)


def test_closing_summary_labels_how_the_winner_was_selected() -> None:
    from orchestrator.sweep.progress import selection_lines

    rows = [{"arm": "s-0", "table": "search", "uf1": 0.4}, {"arm": "s-1", "table": "search", "uf1": 0.6},
            {"arm": "g", "table": "V", "uf1": 0.9}]
    (line,) = selection_lines(rows, {}, "uf1")
    assert line.startswith("best trial s-1 (uf1 0.600): selected on the test subjects, optimistic")
    nested = {"estimate": {"uf1": 0.5, "uf1_sd": 0.1}, "complete": False, "n_outer": 3,
              "choices": [{"outer_subject": "s1", "inner_trial": 1, "param_lr": 0.01, "status": "complete"}]}
    lines = selection_lines([], nested, "uf1")
    assert lines[0].startswith("nested LOSO estimate (uf1, pooled over the outer test predictions of 3")
    assert "0.500 ± 0.100" in lines[0] and "INCOMPLETE" in lines[0]
    assert "outer s1: chose inner trial 1 (lr=0.01)" in lines[1]


def test_dry_run_prints_the_nested_unit_count_and_refuses_a_k_the_data_cannot_meet(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from orchestrator.cli import main

    monkeypatch.chdir(tmp_path)
    for k in ("MLFLOW_TRACKING_URI", "MER_OPTUNA_STORAGE"):
        monkeypatch.delenv(k, raising=False)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    r = CliRunner().invoke(main, ["sweep", "space.yaml", "--dry-run"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert f"= {N_UNITS} units" in text and "time: no estimate" in text
    assert not (tmp_path / "mer-runs" / "mlflow.db").exists()  # a dry run writes nothing
    bad = {**SPEC, "search": {**SPEC["search"], "inner": {"scheme": "group_kfold", "k": 5}}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
    r = CliRunner().invoke(main, ["sweep", "space.yaml", "--dry-run"])
    assert r.exit_code == 2 and "search.inner.k: 5" in r.output


def test_report_selection_section_labels_both_estimates(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from orchestrator.report.nested import LABEL_NESTED, LABEL_TEST, selection_section

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    sweep = client.create_run(exp, tags={"mer.kind": "sweep", "mer.sweep_id": "nnn"}).info.run_id
    client.log_metric(sweep, "nested_uf1", 0.41)
    client.log_metric(sweep, "nested_uf1_sd", 0.02)
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "nested_choices.csv").write_text(
        "outer_subject,inner_trial,param_beta,status,outer_uf1\ns1,2,0.5,complete,0.4\ns2,0,1.0,complete,0.3\n")
    client.log_artifact(sweep, str(tmp_path / "tables" / "nested_choices.csv"), "tables")
    for arm, uf1, status in (("bf-0", 0.55, "complete"), ("bf-1", 0.61, "complete"), ("bf-2", 0.9, "pruned")):
        r = client.create_run(exp, tags={"mer.kind": "config", "mer.table": "search", "mer.status": status,
                                         "mer.arm": arm, "mer.sweep_id": "ttt"}).info.run_id
        client.log_metric(r, "uf1", uf1)
    runs = SimpleNamespace(client=client, experiment_name="e", sweep_run_id=sweep,
                           sweep_tags={"mer.sweep_id": "nnn"})
    out = tmp_path / "out"
    (out / "tables").mkdir(parents=True)
    text = "\n".join(selection_section(runs, out, "uf1"))
    assert f"**{LABEL_NESTED}**: 0.4100 ± 0.0200" in text
    assert f"**{LABEL_TEST}**: 0.6100 (sweep ttt: best trial bf-1" in text  # the pruned trial is no candidate
    assert "| s2 " in text and (out / "tables" / "nested_choices.csv").exists()
    est = list(csv.DictReader(io.StringIO((out / "tables" / "selection_estimates.csv").read_text())))
    assert [(e["selection"], float(e["uf1"])) for e in est] == [(LABEL_NESTED, 0.41), (LABEL_TEST, 0.61)]
