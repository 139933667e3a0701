"""The ``model`` and ``train`` sections, and the config keys an arm, a product or a search may set.

Both sections are mer_model's own typed configs (``ModelKeys``, ``TrainConfig``): names, ranges and
defaults are defined there once. An arm's :class:`Overrides` are the same fields, each optional (unset:
the ``model`` / ``train`` value); num_classes / num_aus come from the dataset, never from the file.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError, create_model
from pydantic.fields import FieldInfo

from mer_model.config import MODEL_KEYS, TRAIN_KEYS, ModelKeys, TrainConfig
from orchestrator.spec.section import Section

ModelSpec = ModelKeys  # defaults of the model keys for every arm (the paper's full model unless set)
TrainSpec = TrainConfig
CONFIG_KEYS = MODEL_KEYS + TRAIN_KEYS  # the keys an arm / product / search may vary, in mer_model's order


def _optional(field: FieldInfo) -> tuple[Any, Any]:
    """``field`` of mer_model's configs as an optional override: same type and constraints, default None."""
    ann = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    return ann | None, Field(None, description=field.description)


OVERRIDE_FIELDS = {**ModelKeys.model_fields, **TrainConfig.model_fields}
_OverridesBase = create_model(  # type: ignore[call-overload]
    "_OverridesBase", __base__=Section, **{k: _optional(f) for k, f in OVERRIDE_FIELDS.items()})


class Overrides(_OverridesBase):  # type: ignore[misc, valid-type]
    """Model (and, rarely, training) keys an arm overrides; unset keys come from ``model`` / ``train``."""

    def set_keys(self) -> dict[str, Any]:
        meta = ("name", "table", "baseline")
        return {k: v for k, v in self.model_dump().items() if v is not None and k not in meta}


def check_key(key: str) -> None:
    """``key`` is a config key an arm / product / search may vary, else ValueError naming the allowed."""
    if key not in CONFIG_KEYS:
        raise ValueError(f"unknown key {key!r}; allowed: {', '.join(CONFIG_KEYS)}")


def check_value(key: str, value: Any) -> None:
    """``value`` is allowed for config key ``key`` (by its field in mer_model.config), else ValueError."""
    field = OVERRIDE_FIELDS[key]
    ann = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    try:
        TypeAdapter(ann).validate_python(value, strict=True)
    except ValidationError:
        raise ValueError(f"{key} value {value!r} is out of range; allowed: {field.description}") from None
