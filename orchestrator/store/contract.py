"""The MLflow contract of a sweep, owned here and imported by both sides.

Writers: ``tracking.py`` (driver), ``executor.py`` (workers). Reader: ``report/``. The layout itself
(which run carries what) is documented in docs/architecture.md, "MLflow layout"; this module holds the
names that layout is spelled with, so the two sides cannot drift apart:

- tag keys (``mer.*`` and MLflow's own ``mlflow.parentRunId``), run kinds and statuses;
- artifact paths and the column order of ``predictions.csv``;
- ``METRICS`` (from ``mer_model.metrics``, the one implementation of the metrics);
- the local-store paths (``./mer-runs/``) and the one place that takes a ``sqlite:///`` URI apart;
- paginated run search and the fold record a worker returns and the tracker writes.

Imports nothing heavy (no MLflow at import time): Ray workers and the CLI's fast paths import it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mer_model.metrics import METRICS

__all__ = ["METRICS", "FoldRecord", "search_runs", "sqlite_path", "run_filter"]

# ------------------------------------------------------------------------------------------------ tags
KIND = "mer.kind"  # sweep | config | fold
SWEEP_ID = "mer.sweep_id"
ARM = "mer.arm"
TABLE = "mer.table"
STATUS = "mer.status"  # config: complete | incomplete | pruned | failed; fold: complete | failed
SUBJECT = "mer.subject"
SEED = "mer.seed"  # training seed of a fold run (str of the int)
CONFIG_HASH = "mer.config_hash"
DATASET = "mer.dataset"
SETUP = "mer.setup"
SPEC = "mer.spec"
NODE = "mer.node"  # hostname / Ray node address / whole Ray node id
GPU_IDS = "mer.gpu_ids"  # logical GPU ids Ray gave the fold's actor, "-" for none
DEVICE = "mer.device"  # where a fold trained: cpu | cuda (results depend on it)
THREADS = "mer.threads"  # torch threads of the worker (results depend on it)
ENVIRONMENT_CHANGED = "mer.environment_changed"  # on a sweep run resumed in another environment
ATTEMPT = "mer.attempt"
ERROR = "mer.error"
BASELINE = "mer.baseline"  # "true" on the config run its table is tested against
OPTUNA_TRIAL = "mer.optuna_trial"
OPTUNA_STUDY = "mer.optuna_study"
OPTUNA_STORAGE = "mer.optuna_storage"
OBJECTIVE = "mer.objective"  # on the sweep run: protocol.objective (what `mer-orch ls` calls best)
N_UNITS = "mer.n_units"  # on the sweep run: units planned when it started (configs x seeds x subjects)
# on the sweep run, written when it finishes: its fold runs counted once (done / failed / reused) and the
# best pooled objective of its complete configs, so `mer-orch ls` reads one row per finished sweep
UNITS_DONE, UNITS_FAILED, UNITS_REUSED = "mer.units_done", "mer.units_failed", "mer.units_reused"
BEST = "mer.best"  # "" when no config is complete
UNIT_KEY = "mer.unit_key"  # a fold run's result identity: config, seed, subject, data (store/reuse.py)
# a fold run's unit key without seed and subject: config and data. One query per config finds every stored
# unit it could reuse (store/reuse.py), instead of a scan of the whole store
REUSE_GROUP = "mer.reuse_group"
# on an experiment: every fold run in it carries mer.reuse_group (set when mer-orch creates it, or once a
# scan found no fold run without one); experiments without it are scanned whole, as before the tag
REUSE_GROUPS = "mer.reuse_groups"
REUSED_FROM = "mer.reused_from"  # on a fold run linked, not trained: the run id that trained the unit
TEST_DATASET = "mer.test_dataset"  # fold run of a union of datasets: the dataset (label) its clips are from
TRAIN_DATASETS = "mer.train_datasets"  # fold run of a cross-dataset sweep: the datasets it trained on (+)
SCHEME = "mer.scheme"  # on the sweep run: protocol.scheme (loso | composite | cross_dataset)
# a nested search (search.selection: nested): per outer subject, inner trials and one chosen config
OUTER_SUBJECT = "mer.outer_subject"  # on inner and chosen config / fold runs of a nested search
TRAIN_SUBJECTS = "mer.train_subjects"  # fold run: the subjects it trained on, comma-separated
TEST_SUBJECTS = "mer.test_subjects"  # fold run: the subjects it was scored on (inner: validation)
NESTED_ROLE = "mer.nested"  # config run: "inner" (a trial of an outer subject's study) | "chosen"
INNER_BEST_TRIAL, INNER_VALUE = "mer.inner_best_trial", "mer.inner_value"  # chosen config run
NESTED_COMPLETE = "mer.nested_complete"  # sweep run: every outer subject has a complete chosen config
INNER_TABLE, CHOSEN_TABLE = "nested-inner", "nested"  # mer.table of those config runs
NESTED_TABLES = (INNER_TABLE, CHOSEN_TABLE)
PARENT = "mlflow.parentRunId"
RUN_NAME = "mlflow.runName"

SWEEP, CONFIG, FOLD = "sweep", "config", "fold"

# ------------------------------------------------------------------------------------------- artifacts
SPEC_YAML = "spec.yaml"
ENVIRONMENT_JSON = "environment.json"
ARMS_CSV = "tables/arms.csv"
AAU_CSV = "tables/aau_weights.csv"
NESTED_CSV = "tables/nested_choices.csv"  # sweep run of a nested search: the choice per outer subject
PREDICTIONS_CSV = "predictions.csv"
CONFUSION_CSV = "confusion.csv"
CONFUSION_PNG = "confusion.png"
LAM_DIR = "lam"
PREDICTION_COLUMNS = ("subject", "clip", "y_true", "y_pred")  # a fold run's predictions.csv
CONFIG_PREDICTION_COLUMNS = ("seed", *PREDICTION_COLUMNS)  # a config run's: every (seed, subject) fold
# a fold that tests several subjects (cross-dataset: a whole dataset) adds each clip's own subject, the
# unit of the report's paired statistics there (``subject`` stays the fold id)
TEST_SUBJECT_COLUMN = "test_subject"
AAU_COLUMNS = ("arm", "subject", "layer1", "layer2", "layer3", "layer4")
# A fold run's AAU layer weights, ``aau_weight_layer<r>`` (r = 1..4): logged at steps 0..E, step 0 the
# weights at initialisation and step e those after epoch e, so MLflow's latest value is the final model's
# weight (Table VIII) and the metric history is its trajectory (issue 16). Logged for every AU-loss arm.
AAU_METRIC_PREFIX = "aau_weight_layer"
N_AU_TRAIN = "n_au_train"  # fold metric: training clips whose AU labels supervised the AU losses (issue 23)


def dataset_metric(label: str, name: str) -> str:
    """A config run's metric on one dataset of a union: ``dataset/<label>/<name>`` (``name`` is ``uf1``,
    ``uf1_sd``, ``uf1_seed0``, ``n_clips``, ...; MLflow allows ``/`` in metric names)."""
    return f"dataset/{label}/{name}"


def parse_dataset_metric(key: str) -> tuple[str, str] | None:
    """``dataset/<label>/<name>`` -> (label, name); anything else -> None."""
    parts = key.split("/")
    return (parts[1], parts[2]) if len(parts) == 3 and parts[0] == "dataset" else None

# ------------------------------------------------------------------------------------------- local state
DEFAULT_RUNS_DIR = Path("mer-runs")  # relative to the working directory (docs/architecture.md)
DEFAULT_CACHE_DIR = DEFAULT_RUNS_DIR / "cache"
DEFAULT_REPORTS_DIR = DEFAULT_RUNS_DIR / "reports"
ENV_HOME = "MER_HOME"  # the one home of local state (`mer-orch --home DIR` sets it for its sub-command)


def home() -> Path:
    """Where local state lives: ``$MER_HOME`` (``mer-orch --home DIR``), else ``./mer-runs``. Every command
    resolves the tracking store, the Optuna storage, the landmark cache and reports under it, unless an
    option or environment variable names that store itself."""
    return Path(os.environ.get(ENV_HOME) or DEFAULT_RUNS_DIR)


def cache_dir() -> Path:
    """The landmark cache under :func:`home`."""
    return home() / "cache"


def reports_dir() -> Path:
    """Report folders under :func:`home`."""
    return home() / "reports"
_SQLITE = "sqlite:///"
_PAGE = 1000  # MLflow's largest search page


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (``sqlite:////abs.db`` -> ``/abs.db``; the path follows
    the third slash), or None for any other URI."""
    return Path(uri[len(_SQLITE):]) if uri.startswith(_SQLITE) else None


def sqlite_uri(path: Path) -> str:
    """``sqlite:///`` + ``path`` (absolute paths give the four-slash form)."""
    return f"{_SQLITE}{path}"


def quote(s: str) -> str:
    """``s`` as a string literal of MLflow's search filter, which has no escapes: an arm named ``Wei's``
    is found only as ``"Wei's"`` (``'Wei\\'s'`` matches nothing, so resume would miss its runs)."""
    if "'" not in s:
        return f"'{s}'"
    if '"' not in s:
        return f'"{s}"'
    raise ValueError(f"name {s!r}: has both quote characters; MLflow's search filter cannot express it")


def run_filter(kind: str, **tags: str) -> str:
    """MLflow filter for runs of ``kind`` whose ``mer.<key>`` tags equal the given values, e.g.
    ``run_filter("fold", sweep_id="abc", arm="X")``."""
    # the kind last: MLflow's SQL store joins the terms in this order, and "kind = fold" matches most of a
    # store; led by the selective tag, a lookup that matches a few runs among 100,000 stored fold runs
    # (local SQLite) takes 5 ms instead of 360 ms (measured with benchmarks/bench_store.py's fill)
    parts = [f"tags.`mer.{k}` = {quote(v)}" for k, v in tags.items()]
    return " and ".join([*parts, f"tags.`{KIND}` = '{kind}'"])


def search_runs(client: Any, experiment_id: str | list[str], flt: str) -> list[Any]:
    """Every run of ``experiment_id`` (or of each of a list) matching ``flt``, all pages (an MLflow page
    holds at most 1000)."""
    runs: list[Any] = []
    token = None
    while True:
        ids = experiment_id if isinstance(experiment_id, list) else [experiment_id]
        page = client.search_runs(ids, flt, max_results=_PAGE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


@dataclass
class FoldRecord:
    """One finished (or failed) fold: what a worker returns, the tracker writes and resume reads back.

    ``error`` is set on a failed attempt; ``actor_died`` only by the pool for a worker that died under the
    call, ``log_failed`` by a worker whose store refused the fold run; either may have left a partial run
    behind, which the driver deletes before the retry.
    """

    arm: str
    subject: str
    status: str  # complete | failed
    run_id: str | None
    seed: int = 0
    clips: list[str] = field(default_factory=list)
    y_true: list[int] = field(default_factory=list)
    y_pred: list[int] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    aau: dict[int, float] = field(default_factory=dict)  # layer -> W_r^2 / sum W^2
    error: str = ""
    node: str = ""
    seconds: float = 0.0
    attempt: int = 1
    actor_died: bool = False
    reused_from: str = ""  # run id that trained this unit, when the fold was linked (store/reuse.py)
    log_failed: bool = False  # trained, but the store refused the fold run (the driver deletes its rest)
    # each test clip's own subject when the fold tests several (cross-dataset); empty: all are ``subject``
    clip_subjects: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "complete"
