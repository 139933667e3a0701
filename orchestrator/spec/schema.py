"""The search-space file as one typed model: :class:`SweepSpec`, composed of one model per section.

A file has the sections ``dataset`` (``dataset.py``), ``protocol`` (``protocol.py``), ``model`` and
``train`` (defaults for the config keys: mer_model's own configs, ``config_keys.py``), ``grid`` (named arms
and cartesian products, ``grid.py``), ``search`` (Optuna, ``search.py``), ``resources``
(``resources.py``), ``tracking`` and ``storage`` (``tracking.py``), and the display-only ``reference``
and ``report`` (``report.py``); ``docs/sweep.md`` documents every key. ``load.py`` reads a file into it
and runs the checks that span sections. The field order here is the order of the dump that the sweep id
hashes: do not reorder.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from orchestrator.spec.config_keys import ModelSpec, TrainSpec
from orchestrator.spec.dataset import DatasetSpec
from orchestrator.spec.grid import GridArm, GridEntry, expand_entries
from orchestrator.spec.protocol import ProtocolSpec
from orchestrator.spec.report import MethodReference, PaperReference, ReportSpec
from orchestrator.spec.resources import ResourcesSpec
from orchestrator.spec.search import SearchSpec
from orchestrator.spec.section import Section
from orchestrator.spec.tracking import StorageSpec, TrackingSpec


class SweepSpec(Section):
    # one dataset (a mapping, as always), or several (a list) for the composite / cross-dataset protocols
    dataset: DatasetSpec | list[DatasetSpec] = Field(default_factory=DatasetSpec)
    protocol: ProtocolSpec = Field(default_factory=ProtocolSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    grid: list[GridEntry] = Field(default_factory=list)
    search: SearchSpec | None = None
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    storage: StorageSpec = Field(default_factory=StorageSpec)
    # arm name -> the paper's values beside that arm; another method's name -> its published numbers
    reference: dict[str, PaperReference | MethodReference] = Field(default_factory=dict)
    report: ReportSpec = Field(default_factory=ReportSpec)  # how the report reads it (display only)
    # Set by load_spec, not by the file.
    source: str = Field("<memory>", exclude=True)
    text: str = Field("", exclude=True, repr=False)

    @model_validator(mode="after")
    def _something_to_run(self) -> SweepSpec:
        if not self.grid and self.search is None:
            raise ValueError("nothing to run; allowed: a non-empty `grid` list and/or a `search` section")
        return self

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or Path(self.source).stem

    @property
    def datasets(self) -> list[DatasetSpec]:
        """The dataset section as a list (one dataset: a list of one)."""
        return list(self.dataset) if isinstance(self.dataset, list) else [self.dataset]

    @property
    def dataset_name(self) -> str:
        """What the sweep runs on, as recorded in ``mer.dataset``: the name, or the names joined by ``+``."""
        return "+".join(d.name for d in self.datasets)


def expand_grid(spec: SweepSpec) -> list[GridArm]:
    """Every grid arm of ``spec`` in file order; products expand in the order of their lists (first key
    slowest) and ``exclude`` removes combinations (``grid.expand_entries``)."""
    return expand_entries(spec.grid, spec.source)
