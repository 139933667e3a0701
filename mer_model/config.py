"""The typed config, defined once: :class:`ModelConfig` (what to build) and :class:`TrainConfig` (how to
train it), frozen pydantic models that own every key's name, type, range, default and the combination
rules. ``orchestrator/spec/`` composes its YAML sections from these classes; nothing else repeats them.

Every key has a default, so ``validate_config({})`` is the paper's full model (GTS-GN, fusion at layer 1,
LAM, AAU loss, beta = 1) with this project's training defaults (the paper gives no optimiser, learning
rate, weight decay, batch size or epoch count: those are ours). Bad input raises :class:`InputError`
(a ``ValueError``) with one line naming the key and what is allowed, e.g.
``config: points: got 7; allowed: 14, 31, 68``.

The flat dict (``validate_config``) stays the form that crosses the Ray boundary and MLflow params; it is
parsed here, once, into the two models.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from mer_model.errors import InputError

ModelName = Literal["gcn", "ss_gn", "gts_gn"]
FeatureType = Literal["A", "B"]
PointSet = Literal[14, 31, 68]
OptimizerName = Literal["adam", "adamw", "sgd"]
PrecisionName = Literal["fp32", "bf16"]  # bf16: autocast of the training forward (ours, not the paper's)
# Options that are NOT in the paper (issue 16; docs/model.md "Beyond the paper"): off by default.
InputName = Literal["absolute", "onset_delta", "onset_delta_shape"]
AlignName = Literal["none", "procrustes"]
AauWeightingName = Literal["learned", "frozen", "sum", "uncertainty"]
INPUTS: tuple[str, ...] = get_args(InputName)
ALIGNS: tuple[str, ...] = get_args(AlignName)
AAU_WEIGHTINGS: tuple[str, ...] = get_args(AauWeightingName)
MODELS: tuple[str, ...] = get_args(ModelName)
FEATURES: tuple[str, ...] = get_args(FeatureType)
POINTS: tuple[int, ...] = get_args(PointSet)
OPTIMIZERS: tuple[str, ...] = get_args(OptimizerName)
PRECISIONS: tuple[str, ...] = get_args(PrecisionName)

_AU_LOSS_RE = re.compile(r"^layer:([1-4])$")
_AU_LOSS_ALLOWED = "'none', 'layer:1'..'layer:4' or 'aau'"


def _au_loss(v: str) -> str:
    if v in ("none", "aau") or _AU_LOSS_RE.match(v):
        return v
    raise ValueError(f"got {v!r}; allowed: {_AU_LOSS_ALLOWED}")


AuLoss = Annotated[str, AfterValidator(_au_loss)]


def parse_au_loss(au_loss: str) -> tuple[str, int | None]:
    """``"none"`` -> ("none", None); ``"layer:3"`` -> ("layer", 3); ``"aau"`` -> ("aau", None)."""
    if au_loss in ("none", "aau"):
        return au_loss, None
    m = _AU_LOSS_RE.match(au_loss)
    assert m is not None, au_loss  # AuLoss refused anything else
    return "layer", int(m.group(1))


class _Frozen(BaseModel):
    # strict: a YAML `lam: 1` or `points: "14"` is refused, not coerced; ints are still accepted as floats
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ModelKeys(_Frozen):
    """The model keys a search-space file may set (``description``: what is allowed, for messages)."""

    model: ModelName = Field("gts_gn", description=", ".join(MODELS))
    features: FeatureType = Field("B", description="'A' (x, y) or 'B' (x, y, D, alpha)")
    points: PointSet = Field(14, description=", ".join(map(str, POINTS)))
    lam: bool = Field(True, description="true or false")
    fusion_layer: int = Field(1, ge=1, le=4, description="an integer 1..4")
    au_loss: AuLoss = Field("aau", description=_AU_LOSS_ALLOWED)
    beta: float = Field(1.0, ge=0, allow_inf_nan=False,  # the paper's ablation value (section IV-A)
                        description="a finite number >= 0")
    # --- not in the paper (EXTENSION_KEYS): the paper's model is every one of them at its default ---
    input: InputName = Field("absolute", description=", ".join(INPUTS))
    align: AlignName = Field("none", description=", ".join(ALIGNS))
    aau_weighting: AauWeightingName = Field("learned", description=", ".join(AAU_WEIGHTINGS))


class ModelConfig(ModelKeys):
    """A buildable model: the keys plus the sizes, which come from the dataset (None: ``train_fold``
    takes them from the data), and the combination rules of the paper's architecture."""

    num_classes: int | None = Field(None, ge=2, description="null or an integer >= 2")
    num_aus: int | None = Field(None, ge=1, description="null or an integer >= 1")

    @model_validator(mode="after")
    def _combinations(self) -> ModelConfig:
        if self.model == "gts_gn" and self.features != "B":
            raise ValueError(f"features: got {self.features!r}; allowed: 'B' for model gts_gn (its second "
                             "stream is (D, alpha))")
        mode, r = parse_au_loss(self.au_loss)
        if self.model == "gts_gn" and mode == "aau" and self.fusion_layer == 4:
            raise ValueError("au_loss: 'aau' with fusion_layer 4 leaves N_L = 1 fused layer, where Eq. (11) "
                             "is undefined; allowed: fusion_layer 1..3 with 'aau', or au_loss 'layer:4' / "
                             "'none'")
        if self.aau_weighting != "learned" and mode != "aau":
            raise ValueError(f"aau_weighting: got {self.aau_weighting!r} with au_loss {self.au_loss!r}; "
                             "allowed: 'learned' unless au_loss is 'aau' (it weights the AAU layers)")
        if self.model == "gts_gn" and mode == "layer" and r < self.fusion_layer:  # type: ignore[operator]
            raise ValueError(f"au_loss: got {self.au_loss!r}; allowed: 'layer:r' with r >= fusion_layer "
                             f"({self.fusion_layer}): AU losses constrain fused features")
        return self


class TrainConfig(_Frozen):
    """Training keys: fixed in advance for every fold (the final epoch's model is evaluated; nothing is
    picked on the left-out subject). Defaults are this project's choices, not the paper's."""

    epochs: int = Field(60, ge=1, description="an integer >= 1")
    batch_size: int = Field(32, ge=1, description="an integer >= 1")
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False, description="a finite number > 0")
    weight_decay: float = Field(1e-4, ge=0, allow_inf_nan=False, description="a finite number >= 0")
    optimizer: OptimizerName = Field("adam", description=", ".join(OPTIMIZERS))
    # "bf16": forward + loss under torch.autocast (CPUs with AVX-512 BF16, GPUs with bf16); weights,
    # optimiser and evaluation stay fp32 (mer_model.train.autocast)
    precision: PrecisionName = Field("fp32", description=", ".join(PRECISIONS))


MODEL_DEFAULTS: dict[str, Any] = ModelConfig().model_dump()
TRAINING_DEFAULTS: dict[str, Any] = TrainConfig().model_dump()
DEFAULTS: dict[str, Any] = {**MODEL_DEFAULTS, **TRAINING_DEFAULTS}
MODEL_KEYS: tuple[str, ...] = tuple(ModelKeys.model_fields)  # settable in a file (sizes come from data)
# Keys of options the paper does not have, with the value that is the paper's model. At that value they are
# left out of config hashes and unit keys (``paper_free``), so results stored before they existed keep
# their ids and stay reusable; reports label an arm "not in the paper" when one differs.
EXTENSION_DEFAULTS: dict[str, Any] = {k: MODEL_DEFAULTS[k] for k in ("input", "align", "aau_weighting")}
TRAIN_KEYS: tuple[str, ...] = tuple(TrainConfig.model_fields)
# Columns of the sweep's summary / arms table and dry run: the settable model keys, then the epoch count
# (the one training key arms of the paper's tables differ in).
SUMMARY_KEYS: tuple[str, ...] = (*MODEL_KEYS, "epochs")


def extensions(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The non-paper options a flat config turns on: ``{key: value}`` for each extension key off its
    default (empty: the config is a paper model)."""
    return {k: cfg[k] for k, v in EXTENSION_DEFAULTS.items() if k in cfg and cfg[k] != v}


def paper_free(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` without the extension keys that sit at their default: the form hashed into config ids and
    unit keys, so adding an option never changes the id of a config that does not use it."""
    return {k: v for k, v in cfg.items() if not (k in EXTENSION_DEFAULTS and v == EXTENSION_DEFAULTS[k])}


def au_layers(cfg: Mapping[str, Any]) -> list[int]:
    """1-based layers that carry an AU loss for a validated config.

    AU losses constrain fused features only (paper III-D): for ``gts_gn`` with fusion layer n the AAU layers
    are n..4 (N_L = 5 - n); the one-stream models have no fusion, so all four layers count.
    """
    mode, r = parse_au_loss(cfg["au_loss"])
    if mode == "none":
        return []
    if mode == "layer":
        return [r]  # type: ignore[list-item]
    first = cfg["fusion_layer"] if cfg["model"] == "gts_gn" else 1
    return list(range(first, 5))


def error_line(err: ValidationError, model: type[BaseModel]) -> str:
    """The first error of ``err`` as ``<key>: got <value>; allowed: <what>`` (or the combination rule's
    own sentence), for one-line messages."""
    e = err.errors()[0]
    if not e["loc"]:  # a combination rule: its message already names the key and what is allowed
        return e["msg"].removeprefix("Value error, ")
    key = str(e["loc"][0])
    field = model.model_fields.get(key)
    allowed = field.description if field is not None else ""
    return f"{key}: got {e['input']!r}; allowed: {allowed}"


ConfigLike = Mapping[str, Any] | BaseModel | tuple[Any, ...]  # flat dict, typed config, or a tuple of them


def _flat(config: ConfigLike) -> Any:
    """A typed config (or a tuple such as ``(ModelConfig, TrainConfig)``) as one flat dict; a mapping (the
    form that crosses the Ray boundary) as it is; anything else unchanged, for the caller to refuse."""
    if isinstance(config, BaseModel):
        return config.model_dump()
    if isinstance(config, tuple) and all(isinstance(c, BaseModel | Mapping) for c in config):
        return {k: v for part in config for k, v in _flat(part).items()}
    return config


def parse_config(config: ConfigLike) -> tuple[ModelConfig, TrainConfig]:
    """A flat config dict, a typed config or a tuple of them -> (:class:`ModelConfig`,
    :class:`TrainConfig`), unset keys defaulted. ``train_fold`` and ``build_model`` take any of these.

    Raises:
        InputError: unknown key, wrong type, out-of-range value or invalid combination; the message names
            the key and the allowed values.
    """
    config = _flat(config)
    if not isinstance(config, Mapping):
        raise InputError(f"config: expected a mapping of keys to values, got {type(config).__name__}")
    unknown = sorted(set(config) - set(DEFAULTS), key=str)
    if unknown:
        raise InputError(f"config: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(DEFAULTS))}")
    parts = []
    for cls in (ModelConfig, TrainConfig):
        try:
            parts.append(cls.model_validate({k: v for k, v in config.items() if k in cls.model_fields}))
        except ValidationError as e:
            raise InputError(f"config: {error_line(e, cls)}") from None
    return parts[0], parts[1]


def validate_config(config: ConfigLike) -> dict[str, Any]:
    """Check a flat config dict and return a new flat dict with every default filled in (the form that
    travels to Ray workers and into MLflow params); see :func:`parse_config`."""
    model, train = parse_config(config)
    return {**model.model_dump(), **train.model_dump()}
