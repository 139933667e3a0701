"""The field's protocols as real sweeps (issue 23; Ray, SQLite MLflow store, train_fold on SynthME):

- the MEGC2019 composite, all 68 subjects of its three parts at tiny size (2 clips a subject), with the
  full model's AAU loss on SMIC clips that carry no AU labels: per-dataset pooled metrics equal
  scikit-learn's on that dataset's predictions, the AU supervision each fold had is recorded, and the same
  command resumes without training anything;
- a cross-dataset sweep (leave one dataset out, two seeds): each unit trains on two whole datasets and
  tests on the third, and a second sweep that names one of those pairs links it instead of training it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from sklearn.metrics import f1_score, recall_score

from orchestrator.cli import main
from orchestrator.store import contract as C

pytestmark = pytest.mark.slow

# The composite's parts: SynthME presets with the MEGC2019 parts' subjects (16 + 24 + 28 = 68)
PARTS = [("smic", "synthme-smic", 16), ("casme2", "synthme-megc-casme2", 24),
         ("samm", "synthme-megc-samm", 28)]


def _datasets(clips_per_subject: int) -> list[dict]:
    return [{"name": n, "label": lab, "setup": "megc3", "knobs": {"n_clips": clips_per_subject * k}}
            for lab, n, k in PARTS]


def _run(tmp: Path, spec: dict, name: str = "space.yaml") -> tuple[int, str]:
    (tmp / name).write_text(yaml.safe_dump(spec, sort_keys=False))
    r = CliRunner().invoke(main, ["sweep", name, "--num-cpus", "2"])
    return r.exit_code, r.output


def _runs(client: MlflowClient, exp: str, kind: str) -> list:
    e = client.get_experiment_by_name(exp)
    return client.search_runs([e.experiment_id], f"tags.`{C.KIND}` = '{kind}'", max_results=5000)


def _predictions(client: MlflowClient, run_id: str, tmp: Path) -> list[dict[str, str]]:
    local = client.download_artifacts(run_id, C.PREDICTIONS_CSV, str(tmp))
    return list(csv.DictReader(io.StringIO(Path(local).read_text())))


def _sklearn(rows: list[dict[str, str]], seed: str) -> dict[str, float]:
    t = np.array([int(r["y_true"]) for r in rows if r["seed"] == seed])
    p = np.array([int(r["y_pred"]) for r in rows if r["seed"] == seed])
    return {"uf1": f1_score(t, p, average="macro", labels=[0, 1, 2], zero_division=0),
            "uar": recall_score(t, p, average="macro", labels=[0, 1, 2], zero_division=0)}


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for k in ("MLFLOW_TRACKING_URI", "MER_OPTUNA_STORAGE", "RAY_ADDRESS", "MER_HOME"):
        monkeypatch.delenv(k, raising=False)
    return tmp_path


def test_composite_of_68_subjects_per_dataset_metrics_au_masking_and_resume(home: Path) -> None:
    spec = {"dataset": _datasets(2), "protocol": {"scheme": "composite", "seed": 0},
            "train": {"epochs": 1, "batch_size": 32},
            "grid": [{"name": "GTS-GN+LAM+AAU", "model": "gts_gn", "lam": True, "au_loss": "aau"}],
            "resources": {"cpu_per_fold": 1, "packing": 4}, "tracking": {"experiment": "composite"}}
    code, out = _run(home, spec)
    assert code == 0, out
    assert all(f"{lab} uf1" in out for lab, _, _ in PARTS)  # the summary's per-dataset columns
    client = MlflowClient(f"sqlite:///{home / 'mer-runs' / 'mlflow.db'}")
    (config,) = _runs(client, "composite", C.CONFIG)
    folds = _runs(client, "composite", C.FOLD)
    subjects = {f.data.tags[C.SUBJECT] for f in folds}
    assert len(folds) == len(subjects) == 68
    assert {s.split(":")[0] for s in subjects} == {"smic", "casme2", "samm"}
    clips = {lab: 2 * k for lab, _, k in PARTS}
    for f in folds:
        lab = f.data.tags[C.SUBJECT].split(":")[0]
        assert f.data.tags[C.TEST_DATASET] == lab
        # AU supervision: every training clip but SMIC's (and the left-out subject's own, when labelled)
        labelled = clips["casme2"] + clips["samm"] - (f.data.metrics["n_test"] if lab != "smic" else 0)
        assert f.data.metrics[C.N_AU_TRAIN] == labelled
    preds = _predictions(client, config.info.run_id, home / "dl")
    assert len(preds) == sum(clips.values())
    for lab in clips:
        mine = [r for r in preds if r["subject"].startswith(f"{lab}:")]
        assert len(mine) == clips[lab]
        for m, v in _sklearn(mine, "0").items():
            assert config.data.metrics[C.dataset_metric(lab, m)] == pytest.approx(v)
    for m, v in _sklearn(preds, "0").items():  # the whole composite, pooled once over every prediction
        assert config.data.metrics[m] == pytest.approx(v)
    code, out = _run(home, spec)  # the same command: every unit is done, nothing trains
    assert code == 0 and "0 folds trained by this run" in out, out


def test_cross_dataset_pairs_seeds_and_reuse_of_a_named_pair(home: Path) -> None:
    arms = [{"name": "SS-GN", "model": "ss_gn", "features": "A", "lam": False, "au_loss": "none",
             "baseline": True},
            {"name": "GTS-GN+LAM+AAU", "model": "gts_gn", "lam": True, "au_loss": "aau"}]
    spec = {"dataset": _datasets(1), "protocol": {"scheme": "cross_dataset", "seeds": [0, 1]},
            "train": {"epochs": 1, "batch_size": 32}, "grid": arms,
            "resources": {"cpu_per_fold": 1}, "tracking": {"experiment": "cross"}}
    code, out = _run(home, spec)
    assert code == 0, out
    client = MlflowClient(f"sqlite:///{home / 'mer-runs' / 'mlflow.db'}")
    folds = _runs(client, "cross", C.FOLD)
    assert len(folds) == 2 * 2 * 3
    n = {lab: k for lab, _, k in PARTS}
    for f in folds:
        test, train = f.data.tags[C.TEST_DATASET], f.data.tags[C.TRAIN_DATASETS].split("+")
        assert test not in train and sorted([*train, test]) == sorted(n)
        assert f.data.tags[C.SUBJECT] == f"{'+'.join(train)}->{test}"
        assert f.data.metrics["n_test"] == n[test]  # every clip of the test dataset, none of the others
    for config in _runs(client, "cross", C.CONFIG):
        preds = _predictions(client, config.info.run_id, home / config.info.run_id)
        for lab in n:
            mine = [r for r in preds if r["subject"].endswith(f"->{lab}")]
            # each clip's own subject (the unit of the report's paired tests), one dataset's subjects
            tested = {r[C.TEST_SUBJECT_COLUMN] for r in mine}
            assert len(tested) == n[lab] and all(t.startswith(f"{lab}:") for t in tested)
            per_seed = [_sklearn(mine, s)["uf1"] for s in ("0", "1")]
            assert config.data.metrics[C.dataset_metric(lab, "uf1")] == pytest.approx(np.mean(per_seed))
            sd = config.data.metrics[C.dataset_metric(lab, "uf1_sd")]
            assert sd == pytest.approx(np.std(per_seed, ddof=1))
    # another sweep naming one of those pairs: its units are the same splits, so they are linked
    one = {**spec, "protocol": {"scheme": "cross_dataset", "seeds": [0, 1],
                                "pairs": [{"train": ["casme2", "samm"], "test": "smic"}]},
           "tracking": {"experiment": "cross-one"}}
    code, out = _run(home, one, "one.yaml")
    assert code == 0 and "0 folds trained by this run, 4 reused" in out, out
    linked = _runs(client, "cross-one", C.CONFIG)[0]  # a linked unit keeps its clips' subjects
    rows = _predictions(client, linked.info.run_id, home / "linked")
    assert {r[C.TEST_SUBJECT_COLUMN] for r in rows} == {f"smic:s{i:02d}" for i in range(1, 17)}


def test_nested_search_over_a_composite_gives_the_estimate_per_dataset(home: Path) -> None:
    tiny = [{"name": "synthme-megc-casme2", "label": "casme2", "setup": "megc3",
             "knobs": {"n_subjects": 3, "n_clips": 9}},
            {"name": "synthme-smic", "label": "smic", "setup": "megc3",
             "knobs": {"n_subjects": 3, "n_clips": 9}}]
    spec = {"dataset": tiny, "protocol": {"scheme": "composite", "seed": 0},
            "train": {"epochs": 1, "batch_size": 16},
            "search": {"name": "s", "sampler": "random", "seed": 0, "n_trials": 2, "selection": "nested",
                       "inner": {"scheme": "group_kfold", "k": 2},
                       "base": {"model": "ss_gn", "features": "A", "lam": False, "au_loss": "none"},
                       "params": {"lr": {"choices": [0.01, 0.001]}}},
            "resources": {"cpu_per_fold": 1}, "tracking": {"experiment": "nested-composite"}}
    code, out = _run(home, spec)
    assert code == 0, out
    client = MlflowClient(f"sqlite:///{home / 'mer-runs' / 'mlflow.db'}")
    (sweep,) = _runs(client, "nested-composite", C.SWEEP)
    m = sweep.data.metrics
    assert {"nested_uf1", "nested_dataset/casme2/uf1", "nested_dataset/smic/uf1"} <= set(m)
    # no outer subject of one dataset is inside an inner fold of its own study
    for f in _runs(client, "nested-composite", C.FOLD):
        outer = f.data.tags.get("mer.outer_subject")
        if outer and "/" in f.data.tags[C.SUBJECT]:
            assert outer not in f.data.tags["mer.train_subjects"].split(",")
            assert outer not in f.data.tags["mer.test_subjects"].split(",")
