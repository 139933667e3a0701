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
- ``megc3``: the MEGC2019 composite's negative / positive / surprise grouping of self-reported emotions
  (SMIC's released labels already are these three).
- ``emotion4`` (CAS(ME)^3): megc3's three groups plus ``others``; ``emotion7`` (CAS(ME)^3, MMEW): the seven
  emotion categories as released (lower case, ``happy`` / ``sad`` normalised to happiness / sadness).

Not every setup exists for every dataset family (``FAMILY_SETUPS``): SMIC has no AU labels, so it has no
objective classes and only ``megc3``; a setup a family does not define is refused with one line.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from mer_model.errors import InputError

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


# the `setup` key of a search-space file (orchestrator/spec/dataset.py)
SetupName = Literal["objective", "objective5", "self5", "megc3", "emotion4", "emotion7"]
SETUPS: tuple[str, ...] = get_args(SetupName)

#: the setups each dataset family defines (docs/data.md, "Class setups")
FAMILY_SETUPS: dict[str, tuple[str, ...]] = {
    "casme2": ("objective", "objective5", "self5", "megc3"),
    "samm": ("objective", "objective5", "self5", "megc3"),
    "smic": ("megc3",),
    "casme3": ("objective", "objective5", "megc3", "emotion4", "emotion7"),
    "mmew": ("objective5", "megc3", "emotion7"),
}
_WHY_NOT = {  # the reason a family lacks a setup, where there is one worth saying
    ("smic", "objective"): "SMIC has no AU labels, so no objective classes",
    ("smic", "objective5"): "SMIC has no AU labels, so no objective classes",
    ("smic", "self5"): "SMIC's labels are negative / positive / surprise only",
    ("mmew", "objective"): "MMEW has no published objective-class counts to fix the >= 10 list from",
}
_OBJECTIVE_KEEP = {
    "casme2": ("I", "II", "III", "IV", "V", "VII"),
    "samm": ("I", "II", "III", "VII"),
    # the released label file (cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx): I 15, II 151, III 234, IV 37,
    # V 47, VI 3, VII 373 -> the classes with >= 10 clips, the paper's Type 1 rule applied to CAS(ME)^3
    "casme3": ("I", "II", "III", "IV", "V", "VII"),
}
_SELF5 = {
    "casme2": ("happiness", "disgust", "repression", "surprise", "others"),
    "samm": ("happiness", "anger", "surprise", "contempt", "others"),
}
_EMOTION7 = {
    "casme3": ("happiness", "disgust", "fear", "anger", "sadness", "surprise", "others"),
    "mmew": ("happiness", "surprise", "anger", "disgust", "fear", "sadness", "others"),
}
_MEGC3 = {
    "negative": ("disgust", "repression", "anger", "contempt", "fear", "sadness", "negative"),
    "positive": ("happiness", "positive"),
    "surprise": ("surprise",),
}
_EMOTION_ALIASES = {"other": "others", "happy": "happiness", "sad": "sadness", "surprised": "surprise",
                    "disgusted": "disgust", "angry": "anger"}


def normalise_emotion(text: object) -> str:
    s = str(text).strip().lower()
    return _EMOTION_ALIASES.get(s, s)


def check_setup(setup: str, family: str) -> None:
    """InputError (one line) unless ``family`` defines ``setup``."""
    if setup not in SETUPS:
        raise InputError(f"setup: {setup!r} is not a class setup; expected one of {', '.join(SETUPS)}")
    allowed = FAMILY_SETUPS.get(family, ())
    if setup not in allowed:
        why = _WHY_NOT.get((family, setup), f"{family} does not define it")
        raise InputError(f"setup: {setup!r} is not available for {family} ({why}); expected one of "
                         f"{', '.join(allowed)}")


def setup_classes(setup: str, family: str) -> tuple[str, ...]:
    """Class names of ``setup`` for a dataset family (``FAMILY_SETUPS``); InputError where undefined."""
    check_setup(setup, family)
    if setup == "objective":
        return _OBJECTIVE_KEEP[family]
    if setup == "objective5":
        return ("I", "II", "III", "IV", "V")
    if setup == "self5":
        return _SELF5[family]
    if setup == "megc3":
        return ("negative", "positive", "surprise")
    if setup == "emotion4":
        return ("negative", "positive", "surprise", "others")
    return _EMOTION7[family]


def _lookup(setup: str, names: tuple[str, ...]) -> dict[str, int]:
    """Emotion (or objective class) -> class index of a setup; values not in it are dropped."""
    if setup in ("megc3", "emotion4"):
        out = {e: names.index(group) for group, emos in _MEGC3.items() for e in emos}
        if setup == "emotion4":
            out["others"] = names.index("others")
        return out
    return {c: i for i, c in enumerate(names)}


def apply_setup(
    setup: str, family: str, objective: np.ndarray, emotion: np.ndarray
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(keep mask (N,) bool, labels of kept clips (M,) int64, class_names) for a setup.

    ``objective``: (N,) str objective classes; ``emotion``: (N,) str normalised self-reports.
    """
    names = setup_classes(setup, family)
    source = objective if setup in ("objective", "objective5") else emotion
    lookup = _lookup(setup, names)
    labels = np.array([lookup.get(str(v), -1) for v in source], dtype=np.int64)
    keep = labels >= 0
    return keep, labels[keep], names
