"""The ``dataset`` section: one dataset (a mapping), or several (a list) for the composite and
cross-dataset protocols, each with an optional short ``label``.

Checked here: each entry's keys and ranges, its folder exists; after the whole file is read
(:func:`check_datasets`): every name is a known dataset, a real one has its folder, a union's labels are
distinct and it does not mix SynthME with real data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_serializer

from mer_model.data.classes import SetupName
from mer_model.errors import InputError
from orchestrator.spec.section import Section, Seed


class DatasetSpec(Section):
    name: str = "synthme-tiny"
    setup: SetupName = "objective"
    root: Path | None = None  # folder of a real dataset (casme2 / samm); relative to the working directory
    seed: Seed = 0  # SynthME generator seed
    magnification: float = Field(1.0, gt=0)
    cache_dir: Path | None = None  # default mer-runs/cache
    knobs: dict[str, Any] = Field(default_factory=dict)  # preset knobs, e.g. n_subjects, n_clips
    # the dataset's short name on a union of datasets: subject prefix and per-dataset column (default: name)
    label: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")

    @model_serializer(mode="wrap")
    def _without_unset_label(self, handler: Any) -> dict[str, Any]:
        # a dataset without a label dumps exactly as before labels existed: sweep ids and config hashes stay
        out = handler(self)
        if self.label is None:
            out.pop("label", None)
        return out

    @property
    def short(self) -> str:
        """The label, else the name: how subjects and per-dataset columns of a union name this dataset."""
        return self.label or self.name

    @field_validator("root")
    @classmethod
    def _root_exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.exists():
            raise ValueError(f"folder {str(v)!r} does not exist; allowed: an existing dataset folder")
        return v

    @field_validator("knobs")
    @classmethod
    def _knobs_are_not_dataset_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        # load_dataset takes these by name: as knobs they would reach it twice
        clash = sorted(set(v) & {"name", "setup", "root", "seed", "magnification", "cache_dir"})
        if clash:
            raise ValueError(f"{', '.join(clash)} is a dataset key, not a knob; allowed: set it as "
                             f"dataset.{clash[0]}")
        return v


def check_datasets(datasets: list[DatasetSpec], many: bool, source: str) -> None:
    """Every dataset known, a real one with its folder; on a union (``many``: the section is a list),
    distinct labels and one kind of data."""
    from mer_model.data.dataset import dataset_names, is_synthetic

    for i, d in enumerate(datasets):
        where = f"dataset[{i}]" if many else "dataset"
        if d.name not in dataset_names():
            raise InputError(f"{source}: {where}.name: {d.name!r} is unknown; allowed: "
                             + ", ".join(dataset_names()))
        if not is_synthetic(d.name) and d.root is None:
            raise InputError(f"{source}: {where}.root: required for {d.name}; allowed: the dataset "
                             "folder holding the coding spreadsheet and the subject frame folders")
    shorts = [d.short for d in datasets]
    dup = next((s for s in shorts if shorts.count(s) > 1), None)
    if dup is not None:
        raise InputError(f"{source}: dataset: {dup!r} names two datasets; allowed: distinct names, or "
                         "a distinct `label` for each")
    if len({is_synthetic(d.name) for d in datasets}) > 1:  # a SynthME part makes every number SynthME's
        raise InputError(f"{source}: dataset: mixes SynthME and real datasets; allowed: all SynthME "
                         "presets or all real datasets")
