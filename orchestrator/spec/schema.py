"""Search-space YAML files: the pydantic schema and ``load_spec(path) -> SweepSpec``.

A file has the sections ``dataset``, ``protocol``, ``model`` (defaults for the model keys), ``train``,
``grid`` (named arms and cartesian products), ``search`` (Optuna), ``resources``, ``tracking`` and
``storage``; ``docs/sweep.md`` documents every key. Everything is checked before Ray starts: unknown keys,
wrong types, ranges, and every arm / search point against ``mer_model.config.validate_config`` (so e.g.
``aau`` with fusion layer 4 is refused here, naming the arm). A bad file raises :class:`InputError` with
one line: ``<file>: <dotted key>: <problem>; allowed: <what>``.
"""

from __future__ import annotations

import itertools
import math
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.fields import FieldInfo

from mer_model.config import MODEL_KEYS, TRAIN_KEYS, ModelKeys, TrainConfig, validate_config
from mer_model.data.classes import SetupName
from mer_model.errors import InputError
from mer_model.metrics import MetricName
from orchestrator.spec import safe_yaml

# Keys an arm / product / search may set: MODEL_KEYS (num_classes / num_aus come from the dataset, never
# from the file) and TRAIN_KEYS, both from mer_model.config.
MAX_CONFIGS = 10_000  # configurations one file may expand to (grid arms + grid-sampler points); the
# paper's whole ablation is 33; a product of 1e6 would take gigabytes before anything runs
MAX_SEED = 2**32 - 1  # numpy's seed range (torch takes more); a larger seed overflows in the generator
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


class _Strict(BaseModel):
    # allow_inf_nan=False: `.inf` / `.nan` in any float field (magnification, cpu_per_fold, beta, ranges)
    # would pass `gt=0` and turn into NaN data or a crash after Ray starts
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True, allow_inf_nan=False)


class DatasetSpec(_Strict):
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


class PairSpec(_Strict):
    """One cross-dataset unit: train on the datasets ``train`` (labels), test on the dataset ``test``."""

    train: list[str] = Field(min_length=1)
    test: str = Field(min_length=1)


class ProtocolSpec(_Strict):
    """How every config is evaluated, once per training seed.

    ``scheme``: ``loso`` (one dataset, leave one subject out), ``composite`` (several datasets as one: LOSO
    over the union, subjects prefixed by their dataset, metrics on the whole and per dataset: the MEGC2019
    composite) or ``cross_dataset`` (train on some datasets, test on another; ``pairs``, default: leave one
    dataset out, each dataset tested once after training on all the others).
    ``seeds: [0, 1, 2]`` trains every (config, fold) once per seed; ``seed: N`` is the one-seed shorthand
    (``seeds: [N]`` is normalised to it, so both give the same sweep id as before seeds existed).
    """

    scheme: Literal["loso", "composite", "cross_dataset"] = "loso"
    pairs: list[PairSpec] | None = Field(None, min_length=1)  # cross_dataset only
    seed: int = Field(0, ge=0, le=MAX_SEED, strict=True)  # one-seed shorthand; with `seeds`, their first
    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED, strict=True)]] | None = Field(None, min_length=1)
    objective: MetricName = "uf1"  # pooled metric (mean over seeds) Optuna optimises / "best so far"
    # shared: every fold of a seed trains from the same torch seed (the stored sweeps); per_unit: each
    # (seed, subject) unit gets its own, derived with numpy's SeedSequence (plan.torch_seed; issue 24)
    seed_scheme: Literal["shared", "per_unit"] = "shared"
    retries: int = Field(1, ge=0)  # extra attempts of a failing fold before it is recorded failed
    # left-out subjects to run (default: all); training uses all others. [] would run nothing, "complete"
    subjects: list[str] | None = Field(None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _seed_or_seeds(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "seeds" not in data:
            return data
        if "seed" in data:
            raise ValueError("seed and seeds are both given; allowed: one of them (seeds: [0, 1, 2], or "
                             "seed: 0 for one seed)")
        seeds = data["seeds"]
        first = seeds[0] if isinstance(seeds, list) and seeds else None
        if not (isinstance(first, int) and not isinstance(first, bool) and first >= 0):
            return data  # the field's own validation names what is wrong
        if len(seeds) == 1:  # seeds: [N] is seed: N
            return {**{k: v for k, v in data.items() if k != "seeds"}, "seed": seeds[0]}
        return {**data, "seed": seeds[0]}

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"{v} repeats a seed; allowed: distinct integers >= 0")
        return v

    @model_serializer(mode="wrap")
    def _without_unset_seeds(self, handler: Any) -> dict[str, Any]:
        # a one-seed protocol dumps exactly as before `seeds` existed: its sweep id does not change
        out = handler(self)
        if self.seeds is None:
            out.pop("seeds", None)
        if self.pairs is None:
            out.pop("pairs", None)
        if self.seed_scheme == "shared":  # likewise the scheme every sweep had before issue 24
            out.pop("seed_scheme", None)
        return out

    @property
    def seed_list(self) -> tuple[int, ...]:
        """The training seeds, in file order (one-seed protocols: ``(seed,)``)."""
        return tuple(self.seeds) if self.seeds else (self.seed,)


# The model / train sections are mer_model's own typed configs: names, ranges and defaults defined there once.
ModelSpec = ModelKeys  # defaults of the model keys for every arm (the paper's full model unless set)
TrainSpec = TrainConfig


def _optional(field: FieldInfo) -> tuple[Any, Any]:
    """``field`` of mer_model's configs as an optional override: same type and constraints, default None."""
    ann = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    return ann | None, Field(None, description=field.description)


_OVERRIDE_FIELDS = {**ModelKeys.model_fields, **TrainConfig.model_fields}
_OverridesBase = create_model(  # type: ignore[call-overload]
    "_OverridesBase", __base__=_Strict, **{k: _optional(f) for k, f in _OVERRIDE_FIELDS.items()})


class _Overrides(_OverridesBase):  # type: ignore[misc, valid-type]
    """Model (and, rarely, training) keys an arm overrides; unset keys come from ``model`` / ``train``."""

    def set_keys(self) -> dict[str, Any]:
        meta = ("name", "table", "baseline")
        return {k: v for k, v in self.model_dump().items() if v is not None and k not in meta}


class ArmSpec(_Overrides):
    name: str = Field(min_length=1)
    table: str = "-"  # paper table the arm belongs to: III, IV(a), IV(b), V, VI, VII, IX
    baseline: bool = False  # the row its table's other arms are tested against (tag mer.baseline)


class ProductSpec(_Strict):
    """A cartesian product of key values; ``name`` is a ``str.format`` template over the varied keys."""

    product: dict[str, list[Any]]
    name: str
    table: str = "-"
    base: _Overrides = Field(default_factory=_Overrides)
    exclude: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("product")
    @classmethod
    def _keys(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for k, vals in v.items():
            if k not in MODEL_KEYS + TRAIN_KEYS:
                raise ValueError(f"unknown key {k!r}; allowed: {', '.join(MODEL_KEYS + TRAIN_KEYS)}")
            if not vals:
                raise ValueError(f"{k}: empty list; allowed: a non-empty list of values")
        return v

    @model_validator(mode="after")
    def _name_and_exclude(self) -> ProductSpec:
        keys = list(self.product)
        _check_template(self.name, keys)
        for j, ex in enumerate(self.exclude):
            # a misspelt key would match nothing and exclude nothing, silently
            bad = [k for k in ex if k not in keys]
            if bad or not ex:
                first = (bad or ["(none)"])[0]
                raise ValueError(f"exclude[{j}]: key {first!r} is not varied by this product; "
                                 f"allowed: a non-empty mapping over {', '.join(keys)}")
        return self

    def size(self) -> int:
        """Combinations before ``exclude`` (computed without expanding them)."""
        return math.prod(len(v) for v in self.product.values())


def _check_template(name: str, keys: list[str]) -> None:
    """Allow only plain ``{key}`` / ``{key:spec}`` placeholders over ``keys``: ``str.format`` would also
    evaluate ``{beta.real}`` / ``{beta[0]}`` (attribute and index access) and raise odd errors later."""
    allowed = f"placeholders among {{{'}, {'.join(keys)}}}"
    try:
        fields = [f for _, f, spec, _ in string.Formatter().parse(name) if f is not None]
        specs = [spec or "" for _, f, spec, _ in string.Formatter().parse(name) if f is not None]
    except ValueError as e:
        raise ValueError(f"name template {name!r} does not parse ({e}); allowed: {allowed}") from None
    for f, spec in zip(fields, specs, strict=True):
        if f not in keys or "{" in spec:
            raise ValueError(f"name template {name!r} has placeholder {{{f}}}; allowed: {allowed}")


def _grid_kind(v: Any) -> str:
    # called with the raw dict when validating and with the model instance when serialising
    return "product" if isinstance(v, ProductSpec) or (isinstance(v, dict) and "product" in v) else "arm"


GridEntry = Annotated[
    Annotated[ArmSpec, Tag("arm")] | Annotated[ProductSpec, Tag("product")], Discriminator(_grid_kind)
]


class FloatParam(_Strict):
    low: float
    high: float
    step: float | None = Field(None, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        if not self.low < self.high:
            raise ValueError(f"low {self.low} must be < high {self.high}")
        # Optuna raises these only at suggest time, after the trial exists: it would stay RUNNING without
        # parameters and every rerun would train the default config in its place
        if self.log and self.step is not None:
            raise ValueError("step and log: true together; allowed: one of them (Optuna refuses both)")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0, got {self.low}; allowed: a positive low")
        return self

    def n_points(self) -> int:
        """Grid points of a stepped range (low, low + step, ..., high)."""
        assert self.step is not None
        return int(round((self.high - self.low) / self.step)) + 1


class CategoricalParam(_Strict):
    choices: list[Any] = Field(min_length=1)


class PrunerSpec(_Strict):
    type: Literal["none", "wilcoxon"] = "none"
    p_threshold: float = Field(0.1, gt=0, le=1)  # WilcoxonPruner: prune when p < p_threshold
    n_startup_steps: int = Field(2, ge=0)  # folds reported before the pruner may act


class InnerSpec(_Strict):
    """The inner split of a nested search (issue 13): over the subjects other than the outer one, grouped
    by subject, so no subject is ever in both an inner training set and its validation set."""

    scheme: Literal["loso", "group_kfold"] = "group_kfold"
    k: int = Field(5, ge=2)  # group_kfold: folds (at most the number of inner subjects; checked at run time)


class SearchSpec(_Strict):
    name: str = "search"  # arm names are "<name>-<trial number>"
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    seed: Seed = 0  # sampler seed
    n_trials: int = Field(ge=1)
    direction: Literal["maximize", "minimize"] = "maximize"
    base: _Overrides = Field(default_factory=_Overrides)  # fixed keys of every trial (over `model`)
    params: dict[str, FloatParam | CategoricalParam] = Field(min_length=1)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    concurrent_trials: int = Field(2, ge=1)  # configs in flight at once (their folds fill the workers)
    # test: one study, trials scored on the LOSO test subjects (the paper's way; optimistic);
    # nested: one study per outer subject on the other subjects (orchestrator/spec/folds.py)
    selection: Literal["test", "nested"] = "test"
    inner: InnerSpec = Field(default_factory=InnerSpec)

    @model_validator(mode="after")
    def _grid_needs_steps(self) -> SearchSpec:
        if self.sampler == "grid":
            for k, p in self.params.items():
                if isinstance(p, FloatParam) and p.step is None:
                    raise ValueError(f"params.{k}: the grid sampler needs a step; allowed: low, high, step")
            sizes = [p.n_points() if isinstance(p, FloatParam) else len(p.choices)
                     for p in self.params.values()]
            if math.prod(sizes) > MAX_CONFIGS:  # GridSampler materialises every point up front
                raise ValueError(f"the grid sampler's space has {math.prod(sizes)} points; allowed: at most "
                                 f"{MAX_CONFIGS} (a coarser step)")
        return self

    @field_validator("params")
    @classmethod
    def _param_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        for k, p in v.items():
            if k not in MODEL_KEYS + TRAIN_KEYS:
                raise ValueError(f"unknown key {k!r}; allowed: {', '.join(MODEL_KEYS + TRAIN_KEYS)}")
            values = p.choices if isinstance(p, CategoricalParam) else [p.low, p.high]
            for value in values:  # each value against mer_model's own field: its type and range, once
                _check_value(k, value)
        return v


def _check_value(key: str, value: Any) -> None:
    """``value`` is allowed for config key ``key`` (by its field in mer_model.config), else ValueError."""
    field = _OVERRIDE_FIELDS[key]
    ann = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    try:
        TypeAdapter(ann).validate_python(value, strict=True)
    except ValidationError:
        raise ValueError(f"{key} value {value!r} is out of range; allowed: {field.description}") from None


class ResourcesSpec(_Strict):
    gpu_per_fold: float = Field(0.0, ge=0, le=8)  # fraction of a GPU per fold (0: CPU-only)
    cpu_per_fold: float = Field(1.0, gt=0)  # CPUs per fold; also torch's thread count in the worker
    packing: int = Field(1, ge=1)  # folds trained together by one worker (fold-batched; 1 = off)


class TrackingSpec(_Strict):
    uri: str | None = None  # default: $MLFLOW_TRACKING_URI, else sqlite:///<abs>/mer-runs/mlflow.db
    experiment: str | None = None  # default: the spec file's stem
    # log each fold's final model (weights, resolved config, class / AU names) for `mer-orch predict`
    save_models: bool = False


class StorageSpec(_Strict):
    url: str | None = None  # default: $MER_OPTUNA_STORAGE, else sqlite:///<abs>/mer-runs/optuna.db


class PaperValues(_Strict):
    """One dataset's published numbers for an arm: ACC in percent (as the paper prints it), F1 in [0, 1]."""

    acc: float = Field(ge=0, le=100)  # percent, e.g. 77.29
    f1: float = Field(ge=0, le=1)  # the paper's F1 (macro-F1 over classes, i.e. UF1)


class PaperReference(_Strict):
    """``reference: {<arm name>: ...}``: the paper's published values beside an arm, for display only.

    They are shown in their own, labelled report columns and never enter any statistic; ``table`` names the
    paper table they are copied from (e.g. ``V``), ``casme2`` / ``samm`` its two dataset columns (either may
    be absent, e.g. Table VII has no AAU row for layer 4).
    """

    table: str = Field(min_length=1)
    casme2: PaperValues | None = None
    samm: PaperValues | None = None


class PublishedValues(_Strict):
    """One column group of another method's published numbers: UF1 and UAR as printed, in [0, 1]."""

    uf1: float | None = Field(None, ge=0, le=1)
    uar: float | None = Field(None, ge=0, le=1)


class MethodReference(_Strict):
    """``reference: {<method>: {source: ..., values: {full: {uf1, uar}, <dataset label>: {...}}}}``: another
    method's published numbers on the sweep's protocol (e.g. the MEGC2019 composite table), display only.

    They get rows of their own in a table of their own, with their ``source``, and never enter a statistic;
    ``full`` is the whole (composite) column, a dataset label one dataset's column."""

    source: str = Field(min_length=1)
    values: dict[str, PublishedValues] = Field(min_length=1)


class ReportSpec(_Strict):
    """``report:``: how ``mer-orch report`` reads the sweep (display only: not part of the sweep's id).

    ``primary``: the metric whose pooled swap tests form each table's corrected family (default: the
    protocol's ``objective``); the other metrics are shown as secondary, uncorrected. ``all``: every
    metric in the family (k arms x 3 metrics, the report of before issue 24).
    """

    primary: MetricName | Literal["all"] | None = None


class SweepSpec(_Strict):
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


# pydantic's tags of union members in an error's location (`dataset`: a mapping or a list; `reference`:
# the paper's values of an arm or another method's numbers): not keys of the file
_UNION_MEMBERS = {"DatasetSpec", "PaperReference", "MethodReference"}


def _dotted(loc: tuple[Any, ...], raw: Any) -> str:
    """('grid', 3, 'arm', 'beta') -> 'grid[3] (arm "X").beta' using the raw YAML to name the arm."""
    out = ""
    node = raw
    after_grid_index = False
    for part in loc:
        if after_grid_index and part in ("arm", "product"):
            after_grid_index = False
            continue  # the grid entry's discriminator tag, not a key
        after_grid_index = False
        if isinstance(part, str) and ("[" in part or part.startswith("function-") or part in _UNION_MEMBERS):
            continue  # pydantic's name of a union member, e.g. "function-after[_range(), FloatParam]"
        if isinstance(part, int) and out == "grid":
            after_grid_index = True
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                out += f" ({node['name']!r})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def _describe(err: dict[str, Any]) -> str:
    typ, msg = err["type"], err["msg"]
    if typ == "extra_forbidden":
        return "unknown key"
    if typ == "missing":
        return "required key missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return msg[0].lower() + msg[1:]


def _allowed_keys(loc: tuple[Any, ...]) -> str:
    """For an unknown key: the keys the enclosing section accepts."""
    parent = [p for p in loc[:-1]
              if not isinstance(p, int) and "[" not in p and not p.startswith("function-")
              and p not in _UNION_MEMBERS]
    if parent and parent[0] == "reference":  # reference.<arm name>[.<dataset>]: the arm name is data
        ref_model = {2: PaperReference, 3: PaperValues}.get(len(parent))  # (another method's: source, values)
        return "; allowed keys: " + ", ".join(ref_model.model_fields) if ref_model else ""
    model: type[BaseModel] = SweepSpec
    for p in parent:
        if p == "arm":
            model = ArmSpec
        elif p == "product":
            model = ProductSpec
        elif p in ("base",):
            model = _Overrides
        else:
            field = model.model_fields.get(p)
            ann = getattr(field, "annotation", None)
            sub = _first_model(ann)
            if sub is None:
                return ""
            model = sub
    names = [n for n in model.model_fields if n not in ("source", "text")]
    return "; allowed keys: " + ", ".join(names)


def _first_model(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for a in getattr(ann, "__args__", ()) or ():
        m = _first_model(a)
        if m is not None:
            return m
    return None


@dataclass(frozen=True)
class GridArm:
    name: str
    table: str
    overrides: dict[str, Any]  # keys set over the `model` / `train` defaults
    where: str  # dotted key for error messages
    baseline: bool = False


def expand_grid(spec: SweepSpec) -> list[GridArm]:
    """Every grid arm in file order; products expand in the order of their lists (first key slowest) and
    ``exclude`` removes combinations."""
    out: list[GridArm] = []
    for i, entry in enumerate(spec.grid):
        if isinstance(entry, ArmSpec):
            out.append(GridArm(entry.name, entry.table, entry.set_keys(), f"grid[{i}] ({entry.name!r})",
                               entry.baseline))
            continue
        keys = list(entry.product)
        n_before = len(out)
        for combo in itertools.product(*(entry.product[k] for k in keys)):
            values = dict(zip(keys, combo, strict=True))
            if any(all(values.get(k) == v for k, v in ex.items()) for ex in entry.exclude):
                continue
            try:
                name = entry.name.format(**values)
            except (KeyError, IndexError, ValueError) as e:
                raise InputError(
                    f"{spec.source}: grid[{i}].name: template {entry.name!r} cannot be filled ({e}); "
                    f"allowed: placeholders among {{{'}, {'.join(keys)}}}"
                ) from None
            combo_desc = ", ".join(f"{k}={v}" for k, v in values.items())
            out.append(GridArm(name, entry.table, {**entry.base.set_keys(), **values},
                               f"grid[{i}].product ({combo_desc})"))
        if len(out) == n_before:
            raise InputError(f"{spec.source}: grid[{i}].exclude: removes all {entry.size()} combinations; "
                             "allowed: an exclude list that leaves at least one arm")
    return out


def _check_size(spec: SweepSpec) -> None:
    """Refuse a file that expands to more than :data:`MAX_CONFIGS` arms before expanding it."""
    n = sum(e.size() if isinstance(e, ProductSpec) else 1 for e in spec.grid)
    if n > MAX_CONFIGS:
        raise InputError(f"{spec.source}: grid: expands to {n} configurations; allowed: at most "
                         f"{MAX_CONFIGS} per file (split it, or vary fewer keys)")


def _check_names(spec: SweepSpec, names: set[str]) -> None:
    """Grid arm names must not look like Optuna trial names (``<search.name>-<n>``): both would share
    one config run (found by name), the trial would be told the arm's value and the arm would vanish."""
    if spec.search is None:
        return
    prefix = spec.search.name + "-"
    for n in sorted(names):
        if n.startswith(prefix) and n[len(prefix):].isdigit():
            raise InputError(f"{spec.source}: grid: arm name {n!r} has the form of an Optuna trial of "
                             f"search {spec.search.name!r}; allowed: a name not of the form "
                             f"'{prefix}<number>' (or another search.name)")


def _check_config(spec: SweepSpec, where: str, overrides: dict[str, Any]) -> None:
    base = {**spec.model.model_dump(), **spec.train.model_dump()}
    cfg = {**base, **overrides}
    try:
        validate_config(cfg)
    except InputError as e:
        detail = str(e).removeprefix("config: ")
        raise InputError(f"{spec.source}: {where}: {detail}") from None
    if spec.resources.packing > 1 and cfg.get("precision", "fp32") != "fp32":
        # fold-batched training refuses bf16 (vmapped BatchNorm): say so now, not once per fold at run time
        raise InputError(f"{spec.source}: {where}: precision: {cfg['precision']!r} with resources.packing "
                         f"{spec.resources.packing}; allowed: 'fp32' when folds are packed, or packing: 1")


def _check_search_points(spec: SweepSpec) -> None:
    """Every categorical combination of the search, at the float ranges' ends, must be a valid config."""
    s = spec.search
    assert s is not None
    fixed = s.base.set_keys()
    cats = {k: p.choices for k, p in s.params.items() if isinstance(p, CategoricalParam)}
    floats = {k: p for k, p in s.params.items() if isinstance(p, FloatParam)}
    keys = list(cats)
    for combo in itertools.product(*(cats[k] for k in keys)):
        for end in ("low", "high"):
            point = {**fixed, **dict(zip(keys, combo, strict=True)),
                     **{k: getattr(p, end) for k, p in floats.items()}}
            desc = ", ".join(f"{k}={v}" for k, v in dict(zip(keys, combo, strict=True)).items())
            _check_config(spec, f"search.params ({desc or end})", point)


def parse_spec(raw: Any, source: str, text: str = "") -> SweepSpec:
    """Validate an already-parsed YAML document (see :func:`load_spec`)."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: (top level): expected a mapping of sections; allowed keys: "
                         + ", ".join(n for n in SweepSpec.model_fields if n not in ("source", "text")))
    try:
        spec = SweepSpec.model_validate({**raw, "source": source, "text": text})
    except ValidationError as e:
        errors = e.errors()
        if isinstance(raw.get("dataset"), list):  # the list member's own error
            errors = [x for x in errors if tuple(x["loc"][:2]) != ("dataset", "DatasetSpec")]
        err = (errors or e.errors())[0]
        loc = tuple(err["loc"])
        extra = _allowed_keys(loc) if err["type"] == "extra_forbidden" else ""
        raise InputError(f"{source}: {_dotted(loc, raw)}: {_describe(err)}{extra}") from None
    _check_datasets(spec)
    _check_protocol(spec)
    _check_size(spec)
    names: set[str] = set()
    for arm in expand_grid(spec):
        if arm.name in names:
            raise InputError(f"{source}: {arm.where}: arm name {arm.name!r} is used twice; "
                             "allowed: unique names")
        if "'" in arm.name and '"' in arm.name:  # MLflow's search filter cannot quote such a name
            raise InputError(f"{source}: {arm.where}: arm name {arm.name!r} has both quote characters; "
                             "allowed: at most one of ' and \"")
        names.add(arm.name)
        _check_config(spec, arm.where, arm.overrides)
    _check_names(spec, names)
    if spec.search is not None:
        _check_search_points(spec)
    _check_reference(spec, names)
    return spec


def _check_reference(spec: SweepSpec, arms: set[str]) -> None:
    """A paper ``reference`` entry must name a grid arm (a typo would silently show no paper values); another
    method's must not (its row is not an arm's), and its columns are ``full`` or the file's datasets."""
    columns = ["full", *[d.short for d in spec.datasets]]
    for name, ref in spec.reference.items():
        if isinstance(ref, PaperReference) and name not in arms:
            raise InputError(f"{spec.source}: reference.{name}: no grid arm has this name; allowed: one of "
                             + ", ".join(sorted(arms)) + " (or another method's numbers, with `source:`)")
        if isinstance(ref, MethodReference):
            if name in arms:
                raise InputError(f"{spec.source}: reference.{name}: is a grid arm's name; allowed: another "
                                 "method's name (the paper's values of an arm take `table:`, not `source:`)")
            bad = next((k for k in ref.values if k not in columns), None)
            if bad is not None:
                raise InputError(f"{spec.source}: reference.{name}.values.{bad}: not a column of this sweep; "
                                 f"allowed: {', '.join(columns)}")


def _check_datasets(spec: SweepSpec) -> None:
    """Every dataset known, a real one with its folder; on a union, distinct labels and one kind of data."""
    from mer_model.data.dataset import is_synthetic

    many = isinstance(spec.dataset, list)
    for i, d in enumerate(spec.datasets):
        where = f"dataset[{i}]" if many else "dataset"
        if d.name not in _dataset_names():
            raise InputError(f"{spec.source}: {where}.name: {d.name!r} is unknown; allowed: "
                             + ", ".join(_dataset_names()))
        if not is_synthetic(d.name) and d.root is None:
            raise InputError(f"{spec.source}: {where}.root: required for {d.name}; allowed: the dataset "
                             "folder holding the coding spreadsheet and the subject frame folders")
    shorts = [d.short for d in spec.datasets]
    dup = next((s for s in shorts if shorts.count(s) > 1), None)
    if dup is not None:
        raise InputError(f"{spec.source}: dataset: {dup!r} names two datasets; allowed: distinct names, or "
                         "a distinct `label` for each")
    if len({is_synthetic(d.name) for d in spec.datasets}) > 1:  # a SynthME part makes every number SynthME's
        raise InputError(f"{spec.source}: dataset: mixes SynthME and real datasets; allowed: all SynthME "
                         "presets or all real datasets")


def _check_protocol(spec: SweepSpec) -> None:
    """The scheme fits the number of datasets; cross-dataset pairs name datasets of the file."""
    p, n, src = spec.protocol, len(spec.datasets), spec.source
    if p.scheme == "loso" and n > 1:
        raise InputError(f"{src}: protocol.scheme: 'loso' with {n} datasets; allowed: 'composite' (LOSO over "
                         "their union) or 'cross_dataset', or one dataset")
    if p.scheme != "loso" and n < 2:
        raise InputError(f"{src}: protocol.scheme: {p.scheme!r} needs at least 2 datasets; allowed: a "
                         "`dataset` list, or scheme 'loso'")
    if p.pairs is not None and p.scheme != "cross_dataset":
        raise InputError(f"{src}: protocol.pairs: only for scheme 'cross_dataset'; allowed: remove it")
    if p.scheme != "cross_dataset":
        return
    if p.subjects is not None:
        raise InputError(f"{src}: protocol.subjects: not with scheme 'cross_dataset' (its units are "
                         "dataset pairs); allowed: remove it")
    if spec.search is not None and spec.search.selection == "nested":
        raise InputError(f"{src}: search.selection: 'nested' is LOSO-based; allowed: 'test' with scheme "
                         "'cross_dataset', or scheme 'composite'")
    labels = [d.short for d in spec.datasets]
    tests: set[str] = set()
    for j, pair in enumerate(p.pairs or []):
        for name in [*pair.train, pair.test]:
            if name not in labels:
                raise InputError(f"{src}: protocol.pairs[{j}]: {name!r} is not a dataset of this file; "
                                 f"allowed: {', '.join(labels)}")
        if pair.test in pair.train or len(set(pair.train)) != len(pair.train):
            raise InputError(f"{src}: protocol.pairs[{j}]: test {pair.test!r} is also trained on (or a "
                             "training dataset repeats); allowed: distinct datasets, none on both sides")
        if pair.test in tests:  # the per-dataset columns are per test dataset: one pair each
            raise InputError(f"{src}: protocol.pairs[{j}]: {pair.test!r} is tested twice; allowed: one pair "
                             "per test dataset (run another sweep for another training set)")
        tests.add(pair.test)


def _dataset_names() -> tuple[str, ...]:
    from mer_model.data.dataset import dataset_names

    return dataset_names()


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> SweepSpec:
    """Read and validate a search-space YAML file, with ``--set KEY=VALUE`` ``overrides`` applied first
    (``orchestrator/spec/overrides.py``: the resolved document is validated, hashed and stored as spec.yaml).

    Raises:
        InputError: one line ``<file>: <dotted key>: <problem>; allowed: <what>`` for a missing or
            unreadable file, bad YAML, unknown keys, wrong types, out-of-range values and invalid arms.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"{p}: cannot read the file ({e.strerror}); allowed: a readable YAML file") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{p}: byte {e.start}: not UTF-8 text; allowed: a UTF-8 YAML file") from None
    try:
        raw = safe_yaml.load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(top level)"
        problem = getattr(e, "problem", None) or "not valid YAML"
        raise InputError(f"{p}: {where}: {problem}; allowed: a YAML mapping") from None
    if overrides:
        from orchestrator.spec.overrides import apply_overrides

        raw, text = apply_overrides(raw, overrides, str(p))
    return parse_spec(raw, str(p), text)
