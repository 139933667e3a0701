"""A sweep attached (``address=``) to a several-node Ray cluster built in-process with
``ray.cluster_utils.Cluster``: folds spread over the nodes, each fold run records the node it ran on."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster

from orchestrator.spec import parse_spec
from orchestrator.sweep.driver import run_sweep

pytestmark = pytest.mark.slow


def test_sweep_on_two_node_cluster(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for k in ("MLFLOW_TRACKING_URI", "MER_OPTUNA_STORAGE", "RAY_ADDRESS"):
        monkeypatch.delenv(k, raising=False)
    spec = parse_spec({
        "dataset": {"name": "synthme-tiny", "knobs": {"n_subjects": 3, "n_clips": 30}},
        "train": {"epochs": 1, "batch_size": 16},
        "grid": [{"name": "SS-GN+Type A", "table": "IV(a)", "model": "ss_gn", "features": "A", "lam": False,
                  "au_loss": "none"},
                 {"name": "GTS-GN (layer 2)", "table": "IV(b)", "fusion_layer": 2, "au_loss": "aau"}],
        "resources": {"cpu_per_fold": 1},
        "tracking": {"experiment": "t-cluster"},
    }, "cluster.yaml")
    # head + a worker node, one CPU each: the pool gets one actor per node
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        result = run_sweep(spec, address=cluster.address)
    finally:
        cluster.shutdown()
    assert not result.incomplete and result.folds_run == 6

    client = MlflowClient(f"sqlite:///{tmp_path / 'mer-runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("t-cluster")
    folds = client.search_runs([exp.experiment_id], "tags.`mer.kind` = 'fold'")
    assert len(folds) == 6 and all(f.data.tags["mer.status"] == "complete" for f in folds)
    nodes = {f.data.tags["mer.node"] for f in folds}
    assert len(nodes) >= 2, nodes  # the folds really ran on different Ray nodes
    configs = client.search_runs([exp.experiment_id], "tags.`mer.kind` = 'config'")
    assert sorted(c.data.tags["mer.status"] for c in configs) == ["complete", "complete"]
