"""The reproducibility record (issue 12): dataset content hash, environment.json on the sweep run, fold
run device / thread tags, the warning of a resume in another environment, and the report header."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from mer_model.data import load_dataset
from orchestrator.store import environment


def _tiny():
    return load_dataset("synthme-tiny", setup="objective", n_subjects=3, n_clips=30)


def test_two_loads_give_one_hash_and_any_change_of_content_changes_it():
    a, b = _tiny(), _tiny()
    assert a.content_hash() == b.content_hash() and len(a.content_hash()) == 64
    labels = a.labels.copy()
    labels[0] = (labels[0] + 1) % a.num_classes
    assert dataclasses.replace(a, labels=labels).content_hash() != a.content_hash()
    lm = a.landmarks.copy()
    lm[0, 1, 30, 0] += 1e-3
    assert dataclasses.replace(a, landmarks=lm).content_hash() != a.content_hash()
    subj = a.subjects.copy()
    subj[0] = "someone-else"
    assert dataclasses.replace(a, subjects=subj).content_hash() != a.content_hash()
    # the name and provenance (paths, cache keys) are not content
    assert dataclasses.replace(a, name="other", meta={"root": "/x"}).content_hash() == a.content_hash()
    # another generator seed is other data
    assert load_dataset(
        "synthme-tiny", setup="objective", seed=1, n_subjects=3, n_clips=30
    ).content_hash() != (a.content_hash())


def test_record_has_the_issue_fields_and_no_path():
    env = environment.collect_environment(_tiny(), threads_per_fold=1)
    assert env["dataset"]["content_hash"] == _tiny().content_hash()
    assert {"torch", "ray", "optuna", "mlflow", "numpy", "scikit-learn", "dlib"} <= set(env["packages"])
    assert env["packages"]["torch"] and env["packages"]["dlib"]
    assert env["cpu"]["logical_cores"] >= 1 and env["torch"]["threads_per_fold"] == 1
    assert {"version", "git_commit", "git_dirty"} <= set(env["project"])
    text = json.dumps(env) + "\n".join(environment.summary_lines(env))
    assert str(Path.cwd()) not in text and "/work" not in text and "/tmp" not in text


def test_code_state_finds_the_checkout_the_code_runs_from():
    """The commit of the checkout holding the package (not of the working directory): a module moved
    deeper once made this silently None (issue 25)."""
    import shutil
    import subprocess

    root = Path(environment.__file__).resolve().parents[2]
    if not (root / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not run from a git checkout")
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout
    assert environment.code_state()["git_commit"] == head.strip()


def test_a_resume_in_another_environment_warns_tags_and_keeps_both_records(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stderr holds only our words
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("env", artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(exp).info.run_id
    env = environment.collect_environment(_tiny(), threads_per_fold=1)
    assert environment.record_sweep(client, run, env) == []
    # the same environment again (a plain resume): nothing to say
    again = {**env, "recorded_at": "2099-01-01T00:00:00Z"}
    assert environment.record_sweep(client, run, again) == [] and "warning" not in capsys.readouterr().err
    changed = {**again, "torch": {**env["torch"], "threads_per_fold": 2}, "python": "3.99.0"}
    diff = environment.record_sweep(client, run, changed)
    assert diff == ["python: {} -> 3.99.0".format(env["python"]), "torch.threads_per_fold: 1 -> 2"]
    err = capsys.readouterr().err
    assert "warning" in err and "torch.threads_per_fold: 1 -> 2" in err
    tags = client.get_run(run).data.tags
    assert tags[environment.CHANGED_TAG] == "python, torch.threads_per_fold"
    files = {f.path for f in client.list_artifacts(run, "environment")}
    assert len(files) == 1
    first = json.loads(Path(client.download_artifacts(run, "environment.json", str(tmp_path))).read_text())
    assert first["torch"]["threads_per_fold"] == 1  # the first record is kept as is


@pytest.mark.slow
def test_a_sweep_stores_its_record_and_folds_their_device_and_threads(finished_sweep, tmp_path):
    client = MlflowClient(finished_sweep["tracking_uri"])
    exp = client.get_experiment_by_name(finished_sweep["experiment"])
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    sweep = next(r for r in runs if r.data.tags["mer.kind"] == "sweep")
    env = json.loads(
        Path(client.download_artifacts(sweep.info.run_id, "environment.json", str(tmp_path))).read_text()
    )
    # the same data loaded here has the hash the sweep recorded
    assert env["dataset"]["content_hash"] == _tiny().content_hash()
    assert env["torch"]["threads_per_fold"] == 1
    folds = [r for r in runs if r.data.tags["mer.kind"] == "fold" and r.data.tags["mer.status"] == "complete"]
    assert folds and all(
        r.data.tags["mer.device"] == "cpu" and r.data.tags["mer.threads"] == "1" for r in folds
    )
    assert all(r.data.tags.get("mer.node") for r in folds)

    from orchestrator.report.build import build_report

    md = build_report(
        finished_sweep["experiment"],
        finished_sweep["tracking_uri"],
        tmp_path / "rep",
        finished_sweep["storage"],
    ).read_text()
    header = md.split("## Tables")[0]
    assert "Reproducibility record" in header and env["dataset"]["content_hash"] in header
    assert str(finished_sweep["dir"]) not in header  # no machine path in the header
    assert np.all([k in header for k in ("torch", "CPU", "threads per fold")])


def test_the_report_header_command_names_no_machine_path():
    from orchestrator.report.redact import redact_paths as no_paths

    cmd = "mer-orch report --experiment e --tracking-uri sqlite:////tmp/u/mlflow.db --out /home/me/reports/e"
    assert no_paths(cmd) == "mer-orch report --experiment e --tracking-uri sqlite:///…/mlflow.db --out …/e"
    # URLs and relative paths are not machine paths
    assert (
        no_paths("--tracking-uri http://head:5000/x/y --out docs/r")
        == "--tracking-uri http://head:5000/x/y --out docs/r"
    )
