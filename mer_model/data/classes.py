"""Class setups (paper Table I) and the objective-class table (Davison et al., paper ref. [51]).

Every loader produces, per clip, an AU set, an objective class (I..VII) and a self-reported emotion
(lower case). A *setup* then keeps some clips and names the classes:

- ``objective`` (Type 1): objective classes with >= 10 samples in the dataset: CASME II keeps
  I, II, III, IV, V, VII (6) and SAMM keeps I, II, III, VII (4), as the paper's text says. (Table I(b) also
  ticks SAMM's class V, but SAMM has only a handful of class-V clips and the text says four classes.)
  The lists are fixed per dataset family so that ``num_classes`` does not change with a subset or preset.
- ``objective5`` (Type 2): objective classes I-V.
- ``self5`` (Type 3): five self-reported emotions (CASME II: happiness, disgust, repression, surprise,
  others; SAMM: happiness, anger, surprise, contempt, others).
- ``megc3``: the MEGC2019 composite's negative / positive / surprise grouping of self-reported emotions.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

OBJECTIVE_CLASSES: tuple[str, ...] = ("I", "II", "III", "IV", "V", "VI", "VII")

# Davison et al., "Objective classes for micro-facial expression recognition" (stack-notes). VII = others.
_TABLE: dict[str, list[tuple[int, ...]]] = {
    "I": [(6,), (12,), (6, 12), (6, 7, 12), (7, 12)],
    "II": [(1, 2), (5,), (25,), (1, 2, 25), (25, 26), (5, 24)],
    "III": [(23,), (4,), (4, 7), (4, 5), (4, 5, 7), (17, 24), (4, 6, 7), (4, 38)],
    "IV": [(10,), (9,), (4, 9), (4, 40), (4, 5, 40), (4, 7, 9), (4, 9, 17), (4, 7, 10), (4, 5, 7, 9),
           (7, 10)],
    "V": [(1,), (15,), (1, 4), (6, 15), (15, 17)],
    "VI": [(1, 2, 4), (20,)],
}
OBJECTIVE_TABLE: dict[frozenset[int], str] = {frozenset(c): k for k, combos in _TABLE.items() for c in combos}


def objective_class(aus: frozenset[int]) -> str:
    """Objective class of an AU set: exact match of the table, else "VII" (others)."""
    return OBJECTIVE_TABLE.get(frozenset(aus), "VII")


def combos_of(cls: str) -> list[frozenset[int]]:
    return [frozenset(c) for c in _TABLE.get(cls, [])]


SetupName = Literal["objective", "objective5", "self5", "megc3"]  # spec.py's dataset.setup uses this type
SETUPS: tuple[str, ...] = get_args(SetupName)

_OBJECTIVE_KEEP = {
    "casme2": ("I", "II", "III", "IV", "V", "VII"),
    "samm": ("I", "II", "III", "VII"),
}
_SELF5 = {
    "casme2": ("happiness", "disgust", "repression", "surprise", "others"),
    "samm": ("happiness", "anger", "surprise", "contempt", "others"),
}
_MEGC3 = {
    "negative": ("disgust", "repression", "anger", "contempt", "fear", "sadness"),
    "positive": ("happiness",),
    "surprise": ("surprise",),
}
_EMOTION_ALIASES = {"other": "others", "happy": "happiness", "sad": "sadness", "surprised": "surprise",
                    "disgusted": "disgust", "angry": "anger"}


def normalise_emotion(text: object) -> str:
    s = str(text).strip().lower()
    return _EMOTION_ALIASES.get(s, s)


def setup_classes(setup: str, family: str) -> tuple[str, ...]:
    """Class names of ``setup`` for a dataset family (``casme2`` | ``samm``)."""
    if setup == "objective":
        return _OBJECTIVE_KEEP[family]
    if setup == "objective5":
        return ("I", "II", "III", "IV", "V")
    if setup == "self5":
        return _SELF5[family]
    if setup == "megc3":
        return ("negative", "positive", "surprise")
    raise ValueError(setup)


def apply_setup(
    setup: str, family: str, objective: np.ndarray, emotion: np.ndarray
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(keep mask (N,) bool, labels of kept clips (M,) int64, class_names) for a setup.

    ``objective``: (N,) str objective classes; ``emotion``: (N,) str normalised self-reports.
    """
    names = setup_classes(setup, family)
    if setup in ("objective", "objective5"):
        source = objective
        lookup = {c: i for i, c in enumerate(names)}
    elif setup == "self5":
        source = emotion
        lookup = {c: i for i, c in enumerate(names)}
    else:
        source = emotion
        lookup = {e: names.index(group) for group, emos in _MEGC3.items() for e in emos}
    labels = np.array([lookup.get(str(v), -1) for v in source], dtype=np.int64)
    keep = labels >= 0
    return keep, labels[keep], names
