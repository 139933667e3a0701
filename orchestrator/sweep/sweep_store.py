"""The store side of a sweep: everything the driver writes to or reads from MLflow.

The sweep run (with its driver lease and environment record), a config run per config, the fold runs of
linked units and of actors that died, the finished configs' pooled metrics and the sweep's final tables.
What a run, tag or artifact is called is ``orchestrator/store/contract.py``'s; how a run is written is
``orchestrator/store/tracking.py``'s. The driver decides when; this class knows where.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mer_model.errors import InputError
from orchestrator.spec import SweepSpec
from orchestrator.spec.plan import ConfigPlan, Unit
from orchestrator.store import contract as C
from orchestrator.store.contract import FoldRecord


class SweepStore:
    """The sweep's MLflow state: client, experiment, sweep run, and the folds an earlier run finished."""

    def __init__(self, spec: SweepSpec, svc: Any, ds: Any, sid: str, data_hash: str) -> None:
        self.spec, self.svc, self.ds, self.sid, self.data_hash = spec, svc, ds, sid, data_hash
        self.study_name = f"{spec.experiment}-{sid}"  # the Optuna study of the sweep (one per outer subject)
        self.done: dict[tuple[str, int, str], FoldRecord] = {}  # (arm, seed, subject) -> complete record
        self.stale: dict[tuple[str, int, str], list[str]] = {}  # failed / partial fold runs to delete

    def open(self, leases: list[Any], note: Any) -> None:
        """Experiment, sweep run and its driver lease (appended to ``leases``, released by ``run_sweep``),
        the environment record, and the folds an earlier run finished."""
        from orchestrator.services import check_artifact_location
        from orchestrator.store import environment, tracking
        from orchestrator.store.outage import HealthWatch, Reporting, tracking_client
        from orchestrator.sweep.lease import Lease

        spec = self.spec
        self.exp_id = tracking.prepare_experiment(self.svc.tracking_uri, spec.experiment,
                                                  self.svc.artifact_root)
        # a remote store: every call rides out an outage for a bounded time, one line to the user
        leases.append(Reporting(note))  # released with the lease at the end
        self.client = tracking_client(self.svc.tracking_uri)
        leases.append(Lease(self.svc.tracking_uri, self.sid, client=self.client))
        leases[-1].acquire(spec.source)  # atomic: of two drivers of this sweep, the second stops here
        watch = HealthWatch.start_for(self.client, self.svc.tracking_uri)
        if watch is not None:
            leases.append(watch)  # released with the lease at the end
        check_artifact_location(self.client.get_experiment(self.exp_id).artifact_location)  # before training
        tags = {C.DATASET: self.ds.name, C.SETUP: self.ds.setup, C.SPEC: Path(spec.source).name,
                C.OBJECTIVE: spec.protocol.objective, C.SCHEME: spec.protocol.scheme}
        if spec.search is not None:
            tags |= {C.OPTUNA_STUDY: self.study_name, C.OPTUNA_STORAGE: self.svc.storage_url}
        self.sweep_run = tracking.open_sweep_run(self.client, self.exp_id, self.sid, tags)
        # reproducibility record (environment.json); a resume in another environment warns
        environment.record_sweep(self.client, self.sweep_run, environment.collect_environment(
            self.ds, threads_per_fold=max(1, int(spec.resources.cpu_per_fold)), data_hash=self.data_hash))
        self.done, self.stale = tracking.scan_folds(self.client, self.exp_id, self.sid,
                                                    spec.protocol.seed_list[0])

    def check_trials_have_runs(self, trials: list[tuple[int, str]]) -> None:
        """Refuse an Optuna study whose finished trials (number, arm) have no config run in the tracking
        store (``mlflow.db`` deleted beside a kept ``optuna.db``, or another tracking URI): resuming it would
        report Optuna values with no runs, predictions or folds behind them."""
        from orchestrator.store import tracking

        lost = [n for n, arm in trials if self.config_run_status(arm)[1] is None]
        if not lost:
            return
        if not tracking.config_runs_of(self.client, self.exp_id, self.sid):  # our new sweep run: none left
            self.client.delete_run(self.sweep_run)
        raise InputError(
            f"{self.spec.source}: search: Optuna study {self.study_name!r} in "
            f"{self.svc.storage_url} has {len(lost)} trial(s) (first #{lost[0]}) with no run in the "
            f"tracking store {self.svc.tracking_uri} (was mlflow.db deleted or replaced?); allowed: the "
            "tracking store the study ran with, or delete the study to start the search again")

    def set_units(self, n_units: int) -> None:
        self.client.set_tag(self.sweep_run, C.N_UNITS, str(n_units))  # for mer-orch ls

    def open_config_run(self, plan: ConfigPlan, extra_tags: dict[str, str] | None) -> str:
        """The config run of ``plan`` (found again on resume), child of the sweep run."""
        from orchestrator.store import tracking

        seeds = self.spec.protocol.seed_list
        tags = {C.TABLE: plan.table, C.CONFIG_HASH: plan.config_hash, C.SWEEP_ID: self.sid,
                C.DATASET: self.ds.name, **(extra_tags or {})}
        if plan.optuna_trial is not None:
            tags[C.OPTUNA_TRIAL] = str(plan.optuna_trial)
        if plan.baseline:
            tags[C.BASELINE] = "true"
        params = {**plan.config, "dataset": self.ds.name, "setup": self.ds.setup,
                  "seeds": ",".join(map(str, seeds))}
        if len(seeds) == 1:
            params["seed"] = seeds[0]  # as before seeds existed
        return tracking.open_config_run(self.client, self.exp_id, sweep_run_id=self.sweep_run,
                                        arm=plan.arm, tags=tags, params=params)

    def drop_stale(self, arm: str, units: list[Unit]) -> None:
        """The config reruns: its stale fold runs (failed, partial) go now."""
        for u in units:
            for rid in self.stale.pop((arm, u.seed, u.subject), []):
                self.client.delete_run(rid)

    def config_run_status(self, arm: str) -> tuple[str | None, str | None]:
        from orchestrator.store.tracking import config_run_status

        return config_run_status(self.client, self.exp_id, self.sid, arm)

    def link_fold(self, parent_run: str, source: Any, tags: dict[str, str], seed: int
                  ) -> tuple[Any, FoldRecord]:
        """A fold run under ``parent_run`` linked to ``source`` (``mer.reused_from``), not trained: the new
        run and its record."""
        from orchestrator.store import reuse, tracking

        run_id = reuse.link_fold(self.client, self.exp_id, parent_run, source, tags)
        return self.client.get_run(run_id), tracking.read_fold_run(self.client, run_id, seed=seed)

    def discard_partial(self, u: Unit) -> None:
        """An actor died or could not log: any partial fold run of ``u`` it left goes."""
        from orchestrator.store import tracking

        tracking.delete_partial_folds(self.client, self.exp_id, sweep_id=self.sid, arm=u.arm, seed=u.seed,
                                      subject=u.subject)

    def log_lost_fold(self, parent_run: str, tags: dict[str, str], rec: FoldRecord, attempt: int) -> str:
        """The fold run of a unit whose actor died on its last attempt (the driver records it)."""
        from orchestrator.store import tracking

        return tracking.log_fold_run(self.client, self.exp_id, parent_run, metrics={}, status="failed",
                                     tags={**tags, C.NODE: rec.node, C.ATTEMPT: str(attempt),
                                           C.ERROR: rec.error})

    def finish_config(self, run_id: str, recs: list[FoldRecord], summary: dict[str, Any], status: str
                      ) -> None:
        from orchestrator.store import tracking

        tracking.finish_config_run(self.client, run_id, folds=recs, summary=summary, status=status,
                                   class_names=self.ds.class_names)

    def log_nested(self, est: dict[str, Any], rows: list[dict[str, Any]], complete: bool) -> None:
        """The nested estimate (``nested_<metric>``; on a union also ``nested_dataset/<label>/<m>``) and
        ``tables/nested_choices.csv`` on the sweep run."""
        import tempfile

        from orchestrator.store.tracking import write_csv

        for m, v in est.items():
            name = (C.parse_dataset_metric(m) or ("", m))[1]
            if name in C.METRICS or (name.endswith("_sd") and name[:-3] in C.METRICS):
                self.client.log_metric(self.sweep_run, f"nested_{m}", float(v))
        self.client.set_tag(self.sweep_run, C.NESTED_COMPLETE, str(complete).lower())
        with tempfile.TemporaryDirectory() as tmp:
            header = list(rows[0]) if rows else ["outer_subject"]
            write_csv(Path(tmp) / C.NESTED_CSV, header, [[r[k] for k in header] for r in rows])
            self.client.log_artifacts(self.sweep_run, tmp)

    def finish(self, header: list[str], rows: list[list[Any]], aau_rows: list[list[Any]], complete: bool
               ) -> None:
        """The sweep run's tables (``tables/arms.csv``, ``tables/aau_weights.csv``) and status."""
        from orchestrator.store import tracking
        from orchestrator.store.listing import record_summary

        record_summary(self.client, self.exp_id, self.sweep_run, self.sid, self.spec.protocol.objective)
        tracking.finish_sweep_run(self.client, self.sweep_run, spec_text=self.spec.text, arms_header=header,
                                  arms_rows=rows, aau_rows=aau_rows,
                                  status="complete" if complete else "incomplete")
