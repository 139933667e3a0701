"""Repeated seeds as a first-class axis (issue 12): the spec's ``seeds``, the (config, seed, subject) unit,
per-seed pooled metrics with their mean and sd on the config run, Optuna's seed-mean objective, resume."""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from sklearn.metrics import accuracy_score, f1_score, recall_score

from mer_model.errors import InputError
from orchestrator.cli import main
from orchestrator.spec import parse_spec
from orchestrator.spec.plan import grid_configs, sweep_id, units_for
from orchestrator.store.contract import FoldRecord
from orchestrator.store.pooled import config_summary
from orchestrator.sweep.inputs import load_data

GRID = {"grid": [{"name": "a", "table": "V"}]}


def _sk(yt: np.ndarray, yp: np.ndarray) -> dict[str, float]:
    """The pooled metrics straight from scikit-learn (UAR over the classes present, as documented)."""
    return {"accuracy": accuracy_score(yt, yp), "uf1": f1_score(yt, yp, average="macro"),
            "uar": recall_score(yt, yp, labels=np.unique(yt), average="macro")}


# ---------------------------------------------------------------------------------------------- fast


def test_seed_is_the_one_seed_shorthand_and_keeps_ids() -> None:
    one, listed = parse_spec({**GRID, "protocol": {"seed": 3}}, "x"), parse_spec(
        {**GRID, "protocol": {"seeds": [3]}}, "x")
    two = parse_spec({**GRID, "protocol": {"seeds": [3, 4]}}, "x")
    assert one.protocol.seed_list == listed.protocol.seed_list == (3,)
    assert sweep_id(one) == sweep_id(listed) != sweep_id(two)
    assert "seeds" not in one.model_dump()["protocol"]  # one-seed files dump (and hash) as before seeds
    assert [p.config_hash for p in grid_configs(one)] == [p.config_hash for p in grid_configs(listed)]
    assert [p.config_hash for p in grid_configs(one)] != [p.config_hash for p in grid_configs(two)]
    assert parse_spec(GRID, "x").protocol.seed_list == (0,)  # default


@pytest.mark.parametrize("protocol,where,allowed", [
    ({"seed": 1, "seeds": [1, 2]}, "protocol:", "allowed: one of them"),
    ({"seeds": [1, 1]}, "protocol.seeds:", "distinct integers >= 0"),
    ({"seeds": []}, "protocol.seeds:", "at least 1"),
    ({"seeds": [0, -2]}, "protocol.seeds[1]:", "greater than or equal to 0"),
    ({"seeds": [0, True]}, "protocol.seeds[1]:", "integer"),
])
def test_bad_seeds_exit_2_with_one_line(tmp_path: Path, protocol: dict, where: str, allowed: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**GRID, "protocol": protocol}))
    r = CliRunner().invoke(main, ["sweep", str(path), "--dry-run"])
    assert r.exit_code == 2, r.output
    msg = r.stderr.strip()
    assert "\n" not in msg and msg.startswith(f"{path}: {where}") and allowed in msg, msg
    with pytest.raises(InputError):
        parse_spec({**GRID, "protocol": protocol}, str(path))


def test_units_cover_every_seed_and_subject_on_distinct_optuna_steps() -> None:
    plan = grid_configs(parse_spec({**GRID, "protocol": {"seeds": [7, 2, 5]}}, "x"))[0]
    units = units_for(plan, ["s1", "s2", "s3", "s4"], (7, 2, 5))
    assert [(u.seed, u.subject) for u in units[:5]] == [(7, "s1"), (7, "s2"), (7, "s3"), (7, "s4"), (2, "s1")]
    assert sorted(u.step(4) for u in units) == list(range(12))  # seed_index * n_subjects + fold_index


def test_config_summary_per_seed_pooled_metrics_mean_and_sd() -> None:
    rng = np.random.default_rng(0)
    seeds, subjects, nc = (4, 9, 1), ["s1", "s2", "s3"], 4
    folds = []
    for k in seeds:
        for s in subjects:
            yt = rng.integers(0, nc, 7)
            yp = np.where(rng.random(7) < 0.5, yt, rng.integers(0, nc, 7))
            folds.append(FoldRecord(arm="a", subject=s, seed=k, status="complete", run_id=None,
                                    y_true=yt.tolist(), y_pred=yp.tolist(), metrics=_sk(yt, yp)))
    out = config_summary(folds, seeds=seeds, n_subjects=len(subjects), num_classes=nc)
    assert (out["n_folds"], out["n_failed"]) == (9, 0)
    for m in ("accuracy", "uf1", "uar"):
        per_seed = []
        for k in seeds:
            mine = [f for f in folds if f.seed == k]
            ref = _sk(np.concatenate([f.y_true for f in mine]), np.concatenate([f.y_pred for f in mine]))[m]
            assert out[f"{m}_seed{k}"] == pytest.approx(ref, abs=1e-12)
            per_seed.append(ref)
        assert out[m] == pytest.approx(np.mean(per_seed), abs=1e-12)
        assert out[f"{m}_sd"] == pytest.approx(statistics.stdev(per_seed), abs=1e-12)
        # per-fold values: over every (seed, subject) fold, labelled fold_*
        assert out[f"fold_mean_{m}"] == pytest.approx(np.mean([f.metrics[m] for f in folds]), abs=1e-12)
    assert out["confusion"].sum() == 9 * 7  # every prediction of every seed counted once
    one = config_summary([f for f in folds if f.seed == 4], seeds=(4,), n_subjects=3, num_classes=nc)
    assert one["uf1"] == one["uf1_seed4"] and "uf1_sd" not in one  # one seed: the pooled value itself


# ---------------------------------------------------------------------------------------------- slow

SPEC = {
    "dataset": {"name": "synthme-tiny", "knobs": {"n_subjects": 3, "n_clips": 30}},
    "protocol": {"seeds": [1, 2], "objective": "uf1", "retries": 0},
    "train": {"epochs": 1, "batch_size": 16},
    "grid": [{"name": "GCN+Type A", "table": "IV(a)", "model": "gcn", "features": "A", "lam": False,
              "au_loss": "none", "baseline": True}],
    # trial 0 finishes first (one config at a time); trial 1 is compared with it unit by unit and may be
    # pruned (p_threshold 1.0 prunes on any evidence): either way a trial with every unit in is COMPLETE
    "search": {"name": "search", "sampler": "random", "seed": 0, "n_trials": 2, "concurrent_trials": 1,
               "base": {"model": "gcn", "features": "A", "lam": False, "au_loss": "none"},
               "params": {"lr": {"choices": [0.01, 1.0e-6]}},
               "pruner": {"type": "wilcoxon", "p_threshold": 1.0, "n_startup_steps": 2}},
    "resources": {"cpu_per_fold": 1},
    "tracking": {"experiment": "t-seeds"},
}
SUBJECTS = {"s1", "s2", "s3"}


def _csv(client: MlflowClient, run_id: str, path: str, tmp: Path) -> list[dict[str, str]]:
    local = client.download_artifacts(run_id, path, str(tmp))
    return list(csv.DictReader(io.StringIO(Path(local).read_text())))


def _sweep(tmp_path: Path) -> CliRunner:
    return CliRunner().invoke(main, ["sweep", "space.yaml", "--num-cpus", "2", "--max-concurrent", "2"])


@pytest.mark.slow
def test_sweep_with_two_seeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for k in ("MLFLOW_TRACKING_URI", "MER_OPTUNA_STORAGE", "RAY_ADDRESS"):
        monkeypatch.delenv(k, raising=False)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    r = _sweep(tmp_path)
    assert r.exit_code == 0, r.output
    client = MlflowClient(f"sqlite:///{tmp_path / 'mer-runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("t-seeds")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    configs = {c.data.tags["mer.arm"]: c for c in runs if c.data.tags["mer.kind"] == "config"}
    folds = [f for f in runs if f.data.tags["mer.kind"] == "fold"]
    spec = parse_spec(SPEC, "space.yaml")
    sid = sweep_id(spec, load_data(spec).content_hash())  # the dataset's hash is part of the sweep id
    study = optuna.load_study(study_name=f"t-seeds-{sid}",
                              storage=f"sqlite:///{tmp_path / 'mer-runs' / 'optuna.db'}")
    for arm, c in configs.items():
        mine = [f for f in folds if f.data.tags["mlflow.parentRunId"] == c.info.run_id]
        keys = [(f.data.tags["mer.seed"], f.data.tags["mer.subject"]) for f in mine]
        assert len(keys) == len(set(keys))  # one fold run per (seed, subject)
        assert c.data.params["seeds"] == "1,2"
        if c.data.tags["mer.status"] != "complete":
            assert c.data.tags["mer.status"] == "pruned" and len(keys) < 6
            continue
        assert set(keys) == {(k, s) for k in ("1", "2") for s in SUBJECTS}  # configs x 2 x subjects
        _check_config_metrics(client, c, mine, tmp_path / arm)
    for t in study.trials:
        c = configs[f"search-{t.number}"]
        n_done = sum(f.data.tags["mlflow.parentRunId"] == c.info.run_id for f in folds)
        if n_done == 6:  # every unit finished: COMPLETE with the seed-mean, never PRUNED
            assert t.state == optuna.trial.TrialState.COMPLETE
            assert t.value == pytest.approx(c.data.metrics["uf1"])
            assert set(t.intermediate_values) == set(range(6))
        else:
            assert t.state == optuna.trial.TrialState.PRUNED
            assert set(t.intermediate_values) <= set(range(6))
    arms = _csv(client, next(r for r in runs if r.data.tags["mer.kind"] == "sweep").info.run_id,
                "tables/arms.csv", tmp_path / "arms")
    row = next(a for a in arms if a["arm"] == "GCN+Type A")
    assert row["n_seeds"] == "2"
    assert float(row["uf1_sd"]) == pytest.approx(configs["GCN+Type A"].data.metrics["uf1_sd"])
    # resume: the same command again trains nothing and keeps every fold run
    again = _sweep(tmp_path)
    assert again.exit_code == 0 and "0 folds trained by this run" in again.output, again.output
    after = client.search_runs([exp.experiment_id], "tags.`mer.kind` = 'fold'", max_results=1000)
    assert sorted(f.info.run_id for f in after) == sorted(f.info.run_id for f in folds)


def _check_config_metrics(client: MlflowClient, c, folds: list, tmp: Path) -> None:  # noqa: ANN001
    """Per-seed pooled metrics = scikit-learn on that seed's concatenated predictions; mean and sd of them;
    the config's predictions.csv = its fold runs' predictions."""
    m = c.data.metrics
    preds = _csv(client, c.info.run_id, "predictions.csv", tmp)
    assert list(preds[0]) == ["seed", "subject", "clip", "y_true", "y_pred"]
    fold_preds = [(f.data.tags["mer.seed"], p) for f in folds
                  for p in _csv(client, f.info.run_id, "predictions.csv", tmp / f.info.run_id)]
    assert sorted((k, p["subject"], p["clip"], p["y_pred"]) for k, p in fold_preds) == sorted(
        (p["seed"], p["subject"], p["clip"], p["y_pred"]) for p in preds)
    for name in ("accuracy", "uf1", "uar"):
        per_seed = []
        for k in ("1", "2"):
            rows = [p for p in preds if p["seed"] == k]
            assert {p["subject"] for p in rows} == SUBJECTS
            ref = _sk(np.array([int(p["y_true"]) for p in rows]), np.array([int(p["y_pred"]) for p in rows]))
            assert m[f"{name}_seed{k}"] == pytest.approx(ref[name], abs=1e-9)
            per_seed.append(ref[name])
        assert m[name] == pytest.approx(np.mean(per_seed), abs=1e-9)
        assert m[f"{name}_sd"] == pytest.approx(statistics.stdev(per_seed), abs=1e-9)
        assert m[f"fold_mean_{name}"] == pytest.approx(np.mean([f.data.metrics[name] for f in folds]))
    assert (m["n_folds"], m["n_failed"]) == (6, 0)


def test_display_only_reference_does_not_change_the_sweep_id() -> None:
    """The paper's reference values change no result: adding or editing them keeps the sweep (and resume)."""
    ref = {"a": {"table": "V", "casme2": {"acc": 77.29, "f1": 0.765}}}
    plain, with_ref = parse_spec(GRID, "x"), parse_spec({**GRID, "reference": ref}, "x")
    assert with_ref.reference and sweep_id(plain) == sweep_id(with_ref)
