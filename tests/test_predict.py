"""Issue 15: kept fold models. ``train_fold(keep_model=True)`` changes nothing else; a saved model loads
(``weights_only``) and predicts what the fold predicted; a ``save_models`` sweep logs one model per fold run
and `mer-orch predict` on the left-out subject's clips reproduces that fold's ``predictions.csv``; bad input
exits 2 with one line and writes nothing."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from fold_data import make_split

from mer_model import train_fold
from mer_model.errors import InputError
from mer_model.predict import load_model, model_meta, predict, save_model
from orchestrator.cli import main

FAST = dict(model="gts_gn", fusion_layer=2, lam=True, au_loss="aau", epochs=2, batch_size=8)


pytestmark = pytest.mark.usefixtures("one_thread")  # the fixture: tests/conftest.py


def test_keep_model_changes_nothing_and_the_saved_model_predicts_the_same(tmp_path: Path) -> None:
    train, test = make_split(16, 0, classes=3, num_aus=4), make_split(6, 1)
    plain = train_fold(FAST, train, test, seed=3)
    kept = train_fold(FAST, train, test, seed=3, keep_model=True)
    d_plain, d_kept = plain.to_dict(), kept.to_dict()
    d_plain.pop("train_seconds"), d_kept.pop("train_seconds")
    assert d_plain == d_kept and plain.state_dict is None and kept.state_dict
    cfg = {**FAST, "num_classes": 3, "num_aus": 4}
    meta = model_meta(cfg, ["a", "b", "c"], ["AU1", "AU2", "AU4", "AU9"])
    save_model(tmp_path / "m", kept.state_dict, meta)
    saved = load_model(tmp_path / "m")
    pred = predict(saved, test.landmarks)
    assert pred.y_pred.tolist() == kept.y_pred.tolist()
    np.testing.assert_allclose(pred.probs, kept.probs, rtol=0, atol=1e-6)
    assert pred.au_probs is not None and pred.au_probs.shape == (6, 4)
    assert ((pred.au_probs > 0) & (pred.au_probs < 1)).all()


def test_weights_of_another_point_set_and_bad_shapes_are_one_line_errors(tmp_path: Path) -> None:
    train, test = make_split(10, 0), make_split(3, 1)
    kept = train_fold({**FAST, "points": 68}, train, test, seed=0, keep_model=True)
    cfg = {**FAST, "points": 14, "num_classes": 3, "num_aus": 4}
    meta = model_meta(cfg, ["a", "b", "c"], ["1", "2", "3", "4"])
    save_model(tmp_path / "m", kept.state_dict, meta)  # 68-point weights, a 14-point config
    with pytest.raises(InputError, match=r"model\.pt: weights do not fit model\.json \(points 14") as e:
        load_model(tmp_path / "m")
    assert "\n" not in str(e.value)
    save_model(tmp_path / "ok", kept.state_dict, {**meta, "config": {**meta["config"], "points": 68}})
    saved = load_model(tmp_path / "ok")
    with pytest.raises(InputError, match=r"clips\.npz: landmarks: got shape \(3, 3, 14, 2\); allowed"):
        predict(saved, test.landmarks[:, :, :14], "clips.npz")


# ------------------------------------------------------------------------------------ through a real sweep
N_SUBJECTS = 3
SPEC = {
    "dataset": {"name": "synthme-tiny", "knobs": {"n_subjects": N_SUBJECTS, "n_clips": 10 * N_SUBJECTS}},
    "protocol": {"seed": 0, "retries": 0},
    "train": {"epochs": 2, "batch_size": 16},
    "grid": [{"name": "GTS-GN+LAM+AAU", "table": "IV(a)", "model": "gts_gn", "features": "B", "lam": True,
              "au_loss": "aau"}],
    "resources": {"cpu_per_fold": 1},
    "tracking": {"experiment": "predict", "save_models": True},
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("save-models")
    (d / "space.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    uri = f"sqlite:///{d / 'mer-runs' / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(d)
        for k in ("MLFLOW_TRACKING_URI", "MER_OPTUNA_STORAGE", "RAY_ADDRESS"):
            mp.delenv(k, raising=False)
        dry = CliRunner().invoke(main, ["sweep", "space.yaml", "--dry-run"])
        r = CliRunner().invoke(main, ["sweep", "space.yaml", "--num-cpus", "2", "--tracking-uri", uri])
    assert r.exit_code == 0, r.output[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("predict")
    folds = client.search_runs([exp.experiment_id], "tags.`mer.kind` = 'fold'")
    (config,) = client.search_runs([exp.experiment_id], "tags.`mer.kind` = 'config'")
    return {"dir": d, "uri": uri, "client": client, "folds": folds, "config": config, "dry": dry.output}


def _left_out_npz(d: Path, subject: str) -> Path:
    """The left-out subject's clips exactly as the sweep loaded them (same spec -> same dataset)."""
    from orchestrator.spec import load_spec
    from orchestrator.sweep.inputs import load_data

    ds = load_data(load_spec(str(d / "space.yaml")))
    idx = np.flatnonzero(ds.subjects == subject)
    path = d / f"{subject}.npz"
    np.savez(path, landmarks=ds.landmarks[idx], clips=ds.clips[idx])
    return path


@pytest.mark.slow
def test_save_models_sweep_logs_one_model_per_fold_and_dry_run_prices_it(swept: dict) -> None:
    assert len(swept["folds"]) == N_SUBJECTS
    for run in swept["folds"]:
        names = {f.path for f in swept["client"].list_artifacts(run.info.run_id, "model")}
        assert names == {"model/model.pt", "model/model.json"}
    assert "save_models: 3 fold models" in swept["dry"]


@pytest.mark.slow
def test_predict_on_the_left_out_subject_reproduces_the_folds_predictions(swept: dict,
                                                                          tmp_path: Path) -> None:
    import mlflow

    d, uri = swept["dir"], swept["uri"]
    for run in swept["folds"]:
        subject = run.data.tags["mer.subject"]
        npz, out = _left_out_npz(d, subject), tmp_path / f"{subject}.csv"
        r = CliRunner().invoke(main, ["predict", "--run", run.info.run_id, str(npz), "--out", str(out),
                                      "--tracking-uri", uri])
        assert r.exit_code == 0, r.output
        got = list(csv.DictReader(out.open()))
        ref = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="predictions.csv",
                                                  dst_path=str(tmp_path / subject), tracking_uri=uri)
        want = list(csv.DictReader(open(ref)))
        assert [(g["clip"], int(g["pred_index"])) for g in got] == [(w["clip"], int(w["y_pred"]))
                                                                    for w in want]
        meta = json.loads(Path(mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="model/model.json", tracking_uri=uri)).read_text())
        assert meta["subject"] == subject and meta["dataset"] == "synthme-tiny"
        assert {g["pred_class"] for g in got} <= set(meta["class_names"])
        probs = np.array([[float(g[f"p_{c}"]) for c in meta["class_names"]] for g in got])
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)  # a float32 softmax, summed


@pytest.mark.slow
def test_predict_bad_input_exits_2_with_one_line_and_writes_nothing(swept: dict, tmp_path: Path) -> None:
    run = swept["folds"][0]
    bad = tmp_path / "bad.npz"
    np.savez(bad, landmarks=np.zeros((2, 3, 14, 2), np.float32))
    out = tmp_path / "out.csv"
    cases = [([run.info.run_id, str(bad)], r"bad\.npz: landmarks: got shape \(2, 3, 14, 2\)"),
             ([swept["config"].info.run_id, str(bad)], r"has no model/"),
             (["0" * 32, str(bad)], r"no run '0{32}'")]
    for (run_id, path), pattern in cases:
        r = CliRunner().invoke(main, ["predict", "--run", run_id, path, "--out", str(out),
                                      "--tracking-uri", swept["uri"]])
        assert r.exit_code == 2, r.output
        assert len(r.stderr.strip().splitlines()) == 1 and re.search(pattern, r.stderr), r.stderr
        assert not out.exists() and not list(tmp_path.glob(".out.csv*"))


@pytest.mark.slow
def test_predict_on_a_casme2_root_goes_through_dlib_and_the_cache(swept: dict, tmp_path: Path) -> None:
    """A dataset root in the CASME II layout (real face images, fixtures.write_casme2): the same extraction,
    cache, class setup and magnification as training, then the model; without --dataset a SynthME model
    cannot tell the layout: exit 2."""
    import mlflow
    from real_fixtures import write_casme2

    from mer_model.data import load_dataset

    root, cache = tmp_path / "casme2", tmp_path / "cache"
    write_casme2(root)
    run = swept["folds"][0]
    out = tmp_path / "casme2.csv"
    args = ["predict", "--run", run.info.run_id, str(root), "--out", str(out), "--tracking-uri", swept["uri"]]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "--dataset" in r.stderr and not out.exists(), r.output
    r = CliRunner().invoke(main, [*args, "--dataset", "casme2", "--cache-dir", str(cache)])
    assert r.exit_code == 0, r.output
    saved = load_model(Path(mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="model", dst_path=str(tmp_path / "m"),
        tracking_uri=swept["uri"])))
    ds = load_dataset("casme2", setup=saved.meta["setup"], root=root, cache_dir=cache,
                      magnification=saved.meta["magnification"])
    got = list(csv.DictReader(out.open()))
    assert [g["clip"] for g in got] == ds.clips.tolist()
    assert [int(g["pred_index"]) for g in got] == predict(saved, ds.landmarks).y_pred.tolist()
