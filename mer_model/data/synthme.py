"""SynthME: a synthetic, FACS-driven micro-expression landmark dataset (no files, generated in ms).

How a clip is made (see docs/data.md for the reasoning and what SynthME numbers are NOT):

1. Face: the real dlib 68-point detection of ``skimage.data.astronaut()`` (``assets/astronaut_68.npy``),
   put in a canonical frame (eye centres on the x axis, inter-ocular distance IOD = 1), then varied per
   subject: face width, face length, eye spacing, brow height, mouth width, small per-point identity noise.
2. AUs: the clip's objective class (I..VII) is drawn with the real dataset's class imbalance, then an AU
   combination of that class from the objective-class table (``classes.py``); VII gets "other" combinations.
   The class is thus derived from the AUs exactly as for real data.
3. Motion: the apex adds the sum of per-AU displacement templates (``AU_TEMPLATES``, FACS-following; max point
   shift 1) scaled by ``amplitude`` (IOD units, default 0.02 = 2 % of IOD) x a per-AU intensity in
   [0.5, 1.5] x the subject's expressivity; the onset carries 0-10 % of it, the offset returns part way
   (keeps 10-60 %).
4. Camera/detector: per-subject face size (IOD 85-115 px, CASME II-like) and position, per-clip head
   rotation (sd 4 deg), per-frame head-pose jitter (rotation sd 0.4 deg, scale sd 0.4 %, shift sd 0.6 px) and
   i.i.d. detector-like noise of sd ``noise`` x IOD per point and frame (default 0.007: about 0.7 px).
5. Self-report: agrees with the class's usual emotion with probability ``agree`` (default 0.75), otherwise
   drawn from the real dataset's emotion frequencies.

Deterministic for a seed: independent child generators (``numpy.random.SeedSequence``) for structure,
shapes, motion, pose/noise and augmentation, so e.g. ``n_augment`` does not change the base landmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mer_model.data.classes import OBJECTIVE_CLASSES, combos_of, objective_class, setup_classes
from mer_model.data.raw import RawClips
from mer_model.errors import InputError

GENERATOR_VERSION = 1
TEMPLATE_FILE = Path(__file__).with_name("assets") / "astronaut_68.npy"

#: AU vocabulary SynthME animates (AU40 of the class table is not a FACS muscle action; not animated)
AU_NUMBERS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26, 38)

# Per-AU displacement templates in the canonical face frame: {dlib index: (dx, dy)}, dx > 0 = AWAY from
# the face midline (mirrored per side), dy > 0 = down. Scaled so the largest point shift is 1.
AU_TEMPLATES_SPEC: dict[int, dict[int, tuple[float, float]]] = {
    1: {20: (0, -1), 21: (0, -1), 22: (0, -1), 23: (0, -1), 19: (0, -0.6), 24: (0, -0.6),
        18: (0, -0.3), 25: (0, -0.3)},  # inner brow raiser
    2: {17: (0, -1), 26: (0, -1), 18: (0, -0.9), 25: (0, -0.9), 19: (0, -0.5), 24: (0, -0.5)},  # outer brow
    4: {21: (-0.6, 0.8), 22: (-0.6, 0.8), 20: (-0.4, 0.8), 23: (-0.4, 0.8), 19: (-0.2, 0.6), 24: (-0.2, 0.6),
        18: (0, 0.4), 25: (0, 0.4), 17: (0, 0.2), 26: (0, 0.2)},  # brow lowerer: down and together
    5: {37: (0, -1), 38: (0, -1), 43: (0, -1), 44: (0, -1)},  # upper lid raiser
    6: {40: (0, -0.8), 41: (0, -0.8), 46: (0, -0.8), 47: (0, -0.8), 36: (0, -0.3), 45: (0, -0.3),
        1: (0, -0.3), 15: (0, -0.3)},  # cheek raiser: lower lids and cheeks up
    7: {40: (0, -1), 41: (0, -1), 46: (0, -1), 47: (0, -1), 37: (0, 0.4), 38: (0, 0.4), 43: (0, 0.4),
        44: (0, 0.4)},  # lid tightener: eye aperture narrows, mostly from below
    9: {31: (0, -1), 35: (0, -1), 32: (0, -0.8), 34: (0, -0.8), 33: (0, -0.7), 30: (0, -0.5), 29: (0, -0.3),
        21: (-0.2, 0.4), 22: (-0.2, 0.4), 50: (0, -0.4), 51: (0, -0.4), 52: (0, -0.4)},  # nose wrinkler
    10: {50: (0, -1), 52: (0, -1), 51: (0, -0.8), 49: (0, -0.6), 53: (0, -0.6), 61: (0, -0.8), 63: (0, -0.8),
         62: (0, -0.6), 31: (0, -0.3), 35: (0, -0.3), 48: (0, -0.3), 54: (0, -0.3)},  # upper lip raiser
    12: {48: (0.7, -1), 54: (0.7, -1), 60: (0.6, -0.8), 64: (0.6, -0.8), 49: (0.3, -0.5), 53: (0.3, -0.5),
         59: (0.3, -0.4), 55: (0.3, -0.4), 61: (0.1, -0.2), 63: (0.1, -0.2), 65: (0.1, -0.2),
         67: (0.1, -0.2)},  # lip corner puller: corners up and out
    14: {48: (0.6, -0.1), 54: (0.6, -0.1), 60: (0.5, 0), 64: (0.5, 0), 49: (0.2, 0), 53: (0.2, 0),
         59: (0.2, 0), 55: (0.2, 0)},  # dimpler: corners tightened sideways
    15: {48: (0, 1), 54: (0, 1), 60: (0, 0.8), 64: (0, 0.8), 59: (0, 0.5), 55: (0, 0.5), 49: (0, 0.3),
         53: (0, 0.3)},  # lip corner depressor
    17: {7: (0, -0.6), 8: (0, -0.8), 9: (0, -0.6), 56: (0, -1), 57: (0, -1), 58: (0, -1), 55: (0, -0.5),
         59: (0, -0.5), 65: (0, -0.6), 66: (0, -0.6), 67: (0, -0.6), 48: (0, -0.2), 54: (0, -0.2)},  # chin up
    20: {48: (1, 0.3), 54: (1, 0.3), 60: (0.8, 0.2), 64: (0.8, 0.2), 49: (0.4, 0), 53: (0.4, 0),
         59: (0.4, 0.1), 55: (0.4, 0.1), 4: (0.2, 0), 12: (0.2, 0), 5: (0.2, 0), 11: (0.2, 0)},  # stretcher
    23: {48: (-0.8, 0), 54: (-0.8, 0), 60: (-0.6, 0), 64: (-0.6, 0), 50: (0, 0.5), 51: (0, 0.5),
         52: (0, 0.5), 56: (0, -0.5), 57: (0, -0.5), 58: (0, -0.5), 49: (-0.3, 0.2),
         53: (-0.3, 0.2)},  # lip tightener: narrower, thinner lips
    24: {61: (0, 0.6), 62: (0, 0.6), 63: (0, 0.6), 65: (0, -0.6), 66: (0, -0.6), 67: (0, -0.6),
         50: (0, 0.8), 51: (0, 0.8), 52: (0, 0.8), 56: (0, -1), 57: (0, -1), 58: (0, -1)},  # lip pressor
    25: {56: (0, 0.7), 57: (0, 0.8), 58: (0, 0.7), 65: (0, 1), 66: (0, 1), 67: (0, 1), 61: (0, -0.3),
         62: (0, -0.3), 63: (0, -0.3)},  # lips part
    26: {6: (0, 0.5), 7: (0, 0.8), 8: (0, 1), 9: (0, 0.8), 10: (0, 0.5), 5: (0, 0.3), 11: (0, 0.3),
         55: (0, 0.6), 59: (0, 0.6), 56: (0, 0.8), 57: (0, 0.8), 58: (0, 0.8), 65: (0, 0.7), 66: (0, 0.7),
         67: (0, 0.7)},  # jaw drop
    38: {31: (1, 0), 35: (1, 0), 32: (0.5, 0), 34: (0.5, 0)},  # nostril dilator
}

# "Others" (class VII) AU combinations: none is in the objective-class table.
OTHER_COMBOS: list[tuple[int, ...]] = [
    (14,), (17,), (4, 14), (14, 17), (4, 17), (7,), (24,), (12, 14), (4, 15), (2,), (4, 10), (1, 4, 7),
    (12, 15), (4, 6), (10, 14),
]


@dataclass(frozen=True)
class Preset:
    """A SynthME preset. The first presets (CASME II / SAMM) draw the objective class with exact counts and
    the self-report from it (``agree``); a preset with ``pairs`` draws (emotion, objective class) pairs
    with exact counts instead, so its emotion setups (megc3, emotion4 / 7) have the published counts."""

    family: str  # which real dataset it mirrors (class setups, emotion names)
    n_subjects: int
    n_clips: int
    class_counts: dict[str, int]  # objective class -> clips at full size (sums to n_clips)
    emotion_prior: dict[str, float]  # self-report frequencies of the real dataset
    agree_emotion: dict[str, dict[str, float]]  # objective class -> usual self-report(s)
    # (emotion, objective class) -> clips at full size; None: the class-first draw above
    pairs: dict[tuple[str, str], int] | None = None
    au_labelled: bool = True  # False (SMIC): AUs drive the motion but are no label: ``aus`` empty


# CASME II / SAMM objective-class counts as usually reported for the released labels (MEGC2018 split).
_CASME2 = Preset(
    family="casme2", n_subjects=26, n_clips=255,
    class_counts={"I": 25, "II": 15, "III": 99, "IV": 26, "V": 20, "VI": 1, "VII": 69},
    emotion_prior={"happiness": 0.13, "disgust": 0.25, "repression": 0.11, "surprise": 0.10, "others": 0.38,
                   "sadness": 0.02, "fear": 0.01},
    agree_emotion={"I": {"happiness": 1.0}, "II": {"surprise": 1.0},
                   "III": {"repression": 0.3, "disgust": 0.3, "others": 0.4}, "IV": {"disgust": 1.0},
                   "V": {"sadness": 0.3, "disgust": 0.4, "others": 0.3}, "VI": {"fear": 1.0},
                   "VII": {"others": 0.7, "disgust": 0.3}},
)
_SAMM = Preset(
    family="samm", n_subjects=32, n_clips=159,
    class_counts={"I": 24, "II": 13, "III": 20, "IV": 8, "V": 3, "VI": 7, "VII": 84},
    emotion_prior={"anger": 0.36, "contempt": 0.08, "disgust": 0.06, "fear": 0.05, "happiness": 0.16,
                   "others": 0.16, "sadness": 0.04, "surprise": 0.09},
    agree_emotion={"I": {"happiness": 1.0}, "II": {"surprise": 1.0}, "III": {"anger": 0.7, "contempt": 0.3},
                   "IV": {"disgust": 0.6, "contempt": 0.4}, "V": {"sadness": 1.0}, "VI": {"fear": 1.0},
                   "VII": {"anger": 0.45, "others": 0.35, "contempt": 0.2}},
)


def _pair_preset(family: str, n_subjects: int, pairs: dict[tuple[str, str], int], *,
                 au_labelled: bool = True) -> Preset:
    """A preset whose clips are (emotion, objective class) pairs with exact counts (docs/data.md)."""
    n = sum(pairs.values())
    classes: dict[str, int] = {}
    emotions: dict[str, int] = {}
    for (emo, cls), k in pairs.items():
        classes[cls] = classes.get(cls, 0) + k
        emotions[emo] = emotions.get(emo, 0) + k
    return Preset(family=family, n_subjects=n_subjects, n_clips=n, class_counts=classes,
                  emotion_prior={e: k / n for e, k in emotions.items()}, agree_emotion={}, pairs=pairs,
                  au_labelled=au_labelled)


# MEGC2019 composite parts under megc3 (See et al. 2019, docs/data.md): SMIC-HS 16 subjects, 164 clips
# (negative 70 / positive 51 / surprise 43), CASME II 24 / 145 (88 / 32 / 25), SAMM 28 / 133 (92 / 26 / 15).
# The emotions inside "negative" and the objective class of every emotion are ours (SynthME's motion
# needs an AU combination per clip): positive -> I, surprise -> II, negatives spread over III / IV / V / VI.
_SMIC = _pair_preset("smic", 16, {("negative", "III"): 30, ("negative", "IV"): 25, ("negative", "V"): 15,
                                  ("positive", "I"): 51, ("surprise", "II"): 43}, au_labelled=False)
_MEGC_CASME2 = _pair_preset("casme2", 24, {
    ("disgust", "IV"): 40, ("disgust", "III"): 22, ("repression", "III"): 26,  # negative 88 (62 + 26)
    ("happiness", "I"): 32, ("surprise", "II"): 25})
_MEGC_SAMM = _pair_preset("samm", 28, {
    ("anger", "III"): 57, ("contempt", "III"): 7, ("contempt", "IV"): 5, ("disgust", "IV"): 9,
    ("fear", "VI"): 8, ("sadness", "V"): 6,  # negative 92 (SAMM's anger 57, contempt 12, disgust 9, ...)
    ("happiness", "I"): 26, ("surprise", "II"): 15})
# CAS(ME)^3 part A: the released cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx, emotion x objective class
# (860 clips, 94 subjects with rows; happy / sad normalised, the 3 "Others" cells counted as others)
_CASME3_TABLE = {
    "anger": (1, 0, 4, 1, 7, 0, 51), "disgust": (2, 6, 154, 24, 6, 0, 58), "fear": (2, 7, 33, 4, 6, 3, 31),
    "happiness": (4, 0, 5, 4, 2, 0, 40), "others": (3, 14, 10, 3, 6, 0, 125),
    "sadness": (0, 1, 13, 1, 7, 0, 35), "surprise": (3, 123, 15, 0, 13, 0, 33),
}
_CASME3 = _pair_preset("casme3", 94, {(e, c): k for e, row in _CASME3_TABLE.items()
                                      for c, k in zip(OBJECTIVE_CLASSES, row, strict=True) if k})
# MMEW micro-expressions (Ben et al. 2021): 300 clips, 36 subjects; happiness 36, surprise 89, anger 8,
# disgust 72, fear 16, sadness 13, others 66. Objective classes per emotion: ours.
_MMEW = _pair_preset("mmew", 36, {
    ("happiness", "I"): 36, ("surprise", "II"): 89, ("anger", "III"): 8, ("disgust", "IV"): 50,
    ("disgust", "III"): 22, ("fear", "VI"): 16, ("sadness", "V"): 13, ("others", "VII"): 66})

PRESETS: dict[str, Preset] = {
    "synthme-casme2": _CASME2,
    "synthme-samm": _SAMM,
    # small CASME II-like preset for tests and smoke sweeps: 6 subjects, 60 clips, every kept class present
    "synthme-tiny": Preset(**{**_CASME2.__dict__, "n_subjects": 6, "n_clips": 60}),
    "synthme-smic": _SMIC,
    "synthme-megc-casme2": _MEGC_CASME2,
    "synthme-megc-samm": _MEGC_SAMM,
    "synthme-casme3": _CASME3,
    "synthme-mmew": _MMEW,
}

KNOBS = ("n_subjects", "n_clips", "noise", "amplitude", "pose", "agree", "n_augment")


def _canonical_template() -> np.ndarray:
    """(68, 2) astronaut points: eye-centre midpoint at 0, eyes on the x axis, IOD = 1."""
    p = np.load(TEMPLATE_FILE).astype(np.float64)
    r_eye, l_eye = p[36:42].mean(0), p[42:48].mean(0)
    d = l_eye - r_eye
    iod = float(np.hypot(*d))
    c, s = d / iod
    rot = np.array([[c, s], [-s, c]])  # rotates d onto +x
    return (p - (r_eye + l_eye) / 2) @ rot.T / iod


def au_templates(template: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """{AU number: (68, 2) displacement in canonical units, max point shift 1}; dx mirrored per side."""
    t = _canonical_template() if template is None else template
    side = np.where(np.abs(t[:, 0]) < 0.05, 0.0, np.sign(t[:, 0]))  # midline points get no sideways motion
    out = {}
    for au, spec in AU_TEMPLATES_SPEC.items():
        d = np.zeros((68, 2))
        for i, (dx, dy) in spec.items():
            d[i] = (dx * side[i], dy)
        out[au] = d / np.linalg.norm(d, axis=1).max()
    return out


def _rotation(theta: np.ndarray) -> np.ndarray:
    """(..., 2, 2) rotation matrices."""
    c, s = np.cos(theta), np.sin(theta)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def _allocate(counts: dict[str, int], n: int, family: str) -> dict[str, int]:
    """Scale class counts to n clips (largest remainder); every class the objective setup keeps gets >= 2."""
    total = sum(counts.values())
    raw = {k: v * n / total for k, v in counts.items()}
    out = {k: int(np.floor(v)) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - out[k], reverse=True)[: n - sum(out.values())]:
        out[k] += 1
    for k in setup_classes("objective", family):
        while out[k] < 2 and n >= 2 * len(counts):
            donor = max(out, key=out.get)
            out[donor] -= 1
            out[k] += 1
    return out


def generate(
    preset: str,
    *,
    seed: int = 0,
    n_subjects: int | None = None,
    n_clips: int | None = None,
    noise: float = 0.007,
    amplitude: float = 0.02,
    pose: float = 1.0,
    agree: float = 0.75,
    n_augment: int = 0,
    magnification: float = 1.0,
    **unknown,
) -> RawClips:
    """Generate a SynthME preset. Knobs: sizes, ``noise`` (detector noise sd, IOD units), ``amplitude``
    (AU motion scale, IOD units), ``pose`` (head-pose jitter scale, 0 = none), ``agree`` (P(self-report =
    class's usual emotion)), ``n_augment`` (K extra training views, re-noised like crop-size re-detection).

    ``magnification`` multiplies the facial motion *before* the camera and the detector: the analogue of
    the paper's video magnification (III, [47]), which enlarges the muscle movement in the frames that the
    landmark detector then reads, so detector noise and head-pose jitter are not magnified with it.
    (``mer_model.data.dataset.magnify`` on detected landmarks, all that real data allows, scales both.)"""
    # Over 60 lines because of its signature and docstring (every knob named in one place); the body is
    # the generator's stages in order, each its own function with its own RNG stream.
    if unknown:
        bad = ", ".join(sorted(unknown))
        raise InputError(f"{preset}: unknown option(s) {bad}; expected any of {', '.join(KNOBS)}")
    p = PRESETS[preset]
    n_subj = p.n_subjects if n_subjects is None else int(n_subjects)
    n = p.n_clips if n_clips is None else int(n_clips)
    checks = [("n_subjects", n_subj >= 2, ">= 2"), ("n_clips", n >= n_subj, ">= n_subjects"),
              ("noise", noise >= 0, ">= 0"), ("amplitude", amplitude >= 0, ">= 0"),
              ("pose", pose >= 0, ">= 0"), ("agree", 0 <= agree <= 1, "in [0, 1]"),
              ("n_augment", n_augment >= 0, ">= 0"), ("magnification", magnification > 0, "> 0")]
    for key, ok, allowed in checks:
        if not ok:
            raise InputError(f"{preset}: {key}={locals().get(key, '?')!r} out of range; expected {allowed}")

    ss = np.random.SeedSequence([seed, 0x5E])
    # one generator per stage, spawned from the seed: each stage's draws are independent of the others'
    r_struct, r_shape, r_motion, r_pose, r_aug = (np.random.default_rng(s) for s in ss.spawn(5))
    base = _canonical_template()
    structure = _structure if p.pairs is None else _structure_pairs
    subj_idx, classes, au_sets, emotions = structure(r_struct, p, n, n_subj, agree)
    face = _faces(r_shape, base, n_subj)
    canon = _motion(r_motion, au_templates(base), face, subj_idx, au_sets, amplitude, magnification)
    clean, sigma, landmarks = _camera(r_pose, canon, face, subj_idx, noise, pose)
    augment = _augment(r_aug, clean, sigma, int(n_augment)) if n_augment else None

    width = len(str(n_subj))
    subjects = np.array([f"s{int(s) + 1:0{width}d}" for s in subj_idx])
    clips = np.array([f"{subjects[i]}_c{i:03d}" for i in range(n)])
    labelled = p.au_labelled  # SMIC: the AUs made the motion but are no annotation, so none is kept
    return RawClips(
        family=p.family,
        landmarks=landmarks.astype(np.float32),
        augment=augment,
        subjects=subjects,
        clips=clips,
        aus=au_sets if labelled else [frozenset()] * n,
        objective=classes.astype(str) if labelled else np.full(n, "", dtype=str),
        emotion=np.array(emotions, dtype=str),
        au_numbers=AU_NUMBERS if labelled else (),
        au_labelled=None if labelled else np.zeros(n, dtype=bool),
        meta={"source": "synthme", "preset": preset, "seed": int(seed),
              "generator_version": GENERATOR_VERSION,
              "knobs": {"n_subjects": n_subj, "n_clips": n, "noise": noise, "amplitude": amplitude,
                        "pose": pose, "agree": agree, "n_augment": int(n_augment)},
              "magnification": float(magnification), "magnified": "motion, before detector noise",
              "note": "synthetic: SynthME numbers are not real-dataset numbers"},
    )


@dataclass(frozen=True)
class _Faces:
    """Per-subject draws: face shapes (S, 68, 2) in canonical units and (S,) expressivity, noise scale,
    inter-ocular distance in px, and (S, 2) face centre in px."""

    shapes: np.ndarray
    expressivity: np.ndarray
    noise_scale: np.ndarray
    iod_px: np.ndarray
    centre_px: np.ndarray


def _structure(r: np.random.Generator, p: Preset, n: int, n_subj: int, agree: float
               ) -> tuple[np.ndarray, np.ndarray, list[frozenset[int]], list[str]]:
    """Clips per subject (uneven, like the real sets), class per clip, AU combination per clip, self-report:
    (n,) subject index, (n,) objective class, AU sets, emotions."""
    weights = r.gamma(1.5, size=n_subj)
    per_subj = np.full(n_subj, 1) + r.multinomial(n - n_subj, weights / weights.sum())
    subj_idx = np.repeat(np.arange(n_subj), per_subj)
    counts = _allocate(p.class_counts, n, p.family)
    classes = np.array([c for c in OBJECTIVE_CLASSES for _ in range(counts.get(c, 0))])
    r.shuffle(classes)
    au_sets = [_draw_combo(r, c) for c in classes]
    assert all(objective_class(a) == c for a, c in zip(au_sets, classes, strict=True))
    emotions = []
    emo_names = list(p.emotion_prior)
    prior = np.array([p.emotion_prior[e] for e in emo_names])
    for c in classes:
        if r.random() < agree:
            usual = p.agree_emotion[c]
            emotions.append(r.choice(list(usual), p=np.array(list(usual.values()))))
        else:
            emotions.append(r.choice(emo_names, p=prior / prior.sum()))
    return subj_idx, classes, au_sets, emotions


def _draw_combo(r: np.random.Generator, cls: str) -> frozenset[int]:
    """An AU combination of objective class ``cls`` (VII: an "other" one); singletons weighted 2, pairs 1,
    larger 0.5."""
    combos = [k for k in combos_of(cls) if k <= set(AU_NUMBERS)] if cls != "VII" else \
        [frozenset(k) for k in OTHER_COMBOS]
    w = np.array([{1: 2.0, 2: 1.0}.get(len(k), 0.5) for k in combos])
    return combos[r.choice(len(combos), p=w / w.sum())]


def _largest_remainder(counts: dict, n: int) -> dict:
    """``counts`` scaled to sum to ``n`` (floor, then +1 to the largest remainders); exact when n = total."""
    total = sum(counts.values())
    raw = {k: v * n / total for k, v in counts.items()}
    out = {k: int(np.floor(v)) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - out[k], reverse=True)[: n - sum(out.values())]:
        out[k] += 1
    return out


def _allocate_pairs(pairs: dict[tuple[str, str], int], n: int) -> dict[tuple[str, str], int]:
    """(emotion, class) counts for n clips: emotions by largest remainder, each emotion >= 2 clips when
    n allows (>= 1 when n >= the number of emotions, so every megc3 / emotion class is present at tiny
    sizes), then each emotion's clips over its classes."""
    emo_counts: dict[str, int] = {}
    for (e, _), k in pairs.items():
        emo_counts[e] = emo_counts.get(e, 0) + k
    out = _largest_remainder(emo_counts, n)
    floor = 2 if n >= 2 * len(out) else 1 if n >= len(out) else 0
    for e in sorted(out):
        while out[e] < floor:
            donor = max(out, key=out.get)
            out[donor] -= 1
            out[e] += 1
    result: dict[tuple[str, str], int] = {}
    for e, k in out.items():
        mine = {c: v for (emo, c), v in pairs.items() if emo == e}
        result.update({(e, c): v for c, v in _largest_remainder(mine, k).items()})
    return result


def _structure_pairs(r: np.random.Generator, p: Preset, n: int, n_subj: int, agree: float
                     ) -> tuple[np.ndarray, np.ndarray, list[frozenset[int]], list[str]]:
    """``_structure`` for a preset with ``pairs``: the (emotion, objective class) of every clip is drawn
    with exact counts (``agree`` has no effect: the emotion is the label, drawn exactly), then an AU
    combination of the class. Same outputs as ``_structure``."""
    weights = r.gamma(1.5, size=n_subj)
    per_subj = np.full(n_subj, 1) + r.multinomial(n - n_subj, weights / weights.sum())
    subj_idx = np.repeat(np.arange(n_subj), per_subj)
    counts = _allocate_pairs(p.pairs, n)
    drawn = [pair for pair in sorted(counts) for _ in range(counts[pair])]
    order = r.permutation(n)
    emotions = [drawn[i][0] for i in order]
    classes = np.array([drawn[i][1] for i in order])
    au_sets = [_draw_combo(r, c) for c in classes]
    return subj_idx, classes, au_sets, emotions


def _faces(r: np.random.Generator, base: np.ndarray, n_subj: int) -> _Faces:
    """Subject faces (canonical units): proportions varied around the astronaut, plus camera distances."""
    shapes = np.repeat(base[None], n_subj, 0)
    mid = np.abs(base[:, 0]) < 0.05
    sgn = np.where(mid, 0.0, np.sign(base[:, 0]))
    eyes, brows, mouth = np.r_[36:48], np.r_[17:27], np.r_[48:68]
    lower = base[:, 1] > 0.3  # below the eye line: nose tip, mouth, jaw
    for s in range(n_subj):
        f = shapes[s]
        f[:, 0] *= r.uniform(0.92, 1.08)  # face width
        f[lower, 1] = 0.3 + (f[lower, 1] - 0.3) * r.uniform(0.93, 1.07)  # face length
        f[np.r_[eyes, brows], 0] += sgn[np.r_[eyes, brows]] * r.normal(0, 0.04)  # eye spacing
        f[brows, 1] += r.normal(0, 0.05) + r.normal(0, 0.01, size=brows.size)  # brow height
        mc = f[mouth, 0].mean()
        f[mouth, 0] = mc + (f[mouth, 0] - mc) * r.uniform(0.9, 1.1)  # mouth width
        f += r.normal(0, 0.01, size=f.shape)  # individual detail
    expressivity = np.exp(r.normal(0, 0.25, size=n_subj))
    noise_scale = r.uniform(0.8, 1.2, size=n_subj)
    iod_px = r.uniform(85, 115, size=n_subj)
    centre_px = np.array([320.0, 230.0]) + r.normal(0, 15, size=(n_subj, 2))
    return _Faces(shapes, expressivity, noise_scale, iod_px, centre_px)


def _motion(r: np.random.Generator, templates: dict[int, np.ndarray], face: _Faces, subj_idx: np.ndarray,
            au_sets: list[frozenset[int]], amplitude: float, magnification: float) -> np.ndarray:
    """(n, 3, 68, 2) canonical onset / apex / offset: apex = neutral + sum_AU amplitude * intensity *
    template, onset and offset a part of it."""
    n = len(subj_idx)
    au_index = {a: j for j, a in enumerate(AU_NUMBERS)}
    stack = np.stack([templates[a] for a in AU_NUMBERS])  # (A, 68, 2)
    intens = np.zeros((n, len(AU_NUMBERS)))
    for i, aus in enumerate(au_sets):
        for a in aus:
            intens[i, au_index[a]] = r.uniform(0.5, 1.5)
    disp = np.einsum("na,avd->nvd", intens, stack) * amplitude * face.expressivity[subj_idx, None, None]
    disp = disp * magnification  # video magnification acts on the motion, before camera and detector
    keep = np.stack([r.uniform(0, 0.1, n), np.ones(n), r.uniform(0.1, 0.6, n)], 1)  # (n, 3)
    return face.shapes[subj_idx][:, None] + keep[:, :, None, None] * disp[:, None]


def _camera(r: np.random.Generator, canon: np.ndarray, face: _Faces, subj_idx: np.ndarray, noise: float,
            pose: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-subject size / position, per-clip rotation, per-frame pose jitter, detector noise: (n, 3, 68, 2)
    clean pixels, (n,) noise sd in px, (n, 3, 68, 2) detected landmarks."""
    n = len(subj_idx)
    theta = np.deg2rad(r.normal(0, 4, (n, 1)) + pose * r.normal(0, 0.4, (n, 3)))
    scale = face.iod_px[subj_idx, None] * (1 + pose * r.normal(0, 0.004, (n, 3)))
    shift = face.centre_px[subj_idx, None] + r.normal(0, 8, (n, 1, 2))
    shift = shift + pose * r.normal(0, 0.6, (n, 3, 2))
    clean = np.einsum("nfij,nfvj->nfvi", _rotation(theta), canon) * scale[..., None, None] + shift[:, :, None]
    sigma = (noise * face.iod_px * face.noise_scale)[subj_idx]  # px
    return clean, sigma, clean + r.normal(size=clean.shape) * sigma[:, None, None, None]


def _augment(r: np.random.Generator, clean: np.ndarray, sigma: np.ndarray, k: int) -> np.ndarray:
    """(n, k, 3, 68, 2) crop-size re-detections: a small box-scale / offset change and a fresh
    detector-noise draw per view."""
    n = len(clean)
    centre = clean.mean(axis=(1, 2))[:, None, None, None]  # (n, 1, 1, 1, 2)
    zoom = 1 + r.normal(0, 0.003, (n, k, 1, 1, 1))
    aug = centre + (clean[:, None] - centre) * zoom + r.normal(0, 0.3, (n, k, 1, 1, 2))
    return (aug + r.normal(size=aug.shape) * sigma[:, None, None, None, None]).astype(np.float32)
