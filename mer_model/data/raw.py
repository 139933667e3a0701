"""The raw clip table every source produces (``RawClips``) and landmark-space magnification (``magnify``).

Its own module so that the sources (``synthme.py``, ``cache.py``) and ``dataset.py``, which applies a
class setup to their output, all import it from below: no import circle inside ``mer_model.data``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class RawClips:
    """Every clip of a source before a class setup is applied (what the cache stores).

    landmarks (N, 3, 68, 2) raw pixels; augment (N, K, 3, 68, 2) or None; aus: per-clip AU number sets;
    objective (N,) str "I".."VII"; emotion (N,) str lower-case self-report; au_numbers: AU vocabulary.
    """

    family: str  # "casme2" | "samm" | ...: which class-setup lists apply
    landmarks: np.ndarray
    augment: np.ndarray | None
    subjects: np.ndarray
    clips: np.ndarray
    aus: list[frozenset[int]]
    objective: np.ndarray
    emotion: np.ndarray
    au_numbers: tuple[int, ...]
    meta: dict
    # (N,) bool: which clips carry AU labels; None = every clip (CASME II, SAMM). SMIC has none: its clips
    # train on the classification loss only (the AU losses are masked, never fed zeros as targets)
    au_labelled: np.ndarray | None = None


def magnify(x: np.ndarray, a: float) -> np.ndarray:
    """Landmark-space motion magnification ``x_onset + a (x - x_onset)`` over the frame axis.

    x: (..., 3, 68, 2) with frame 0 = onset. The paper magnifies the *video* before detection ([47], factor
    3 "following the setup in [9]"). On detected landmarks the closest map is this one, which scales detector
    noise and head-pose jitter along with the motion; for the paper's pipeline on real data, magnify the
    videos before ``mer-orch extract``. SynthME magnifies its motion before the noise (``synthme.generate``).
    """
    if a == 1.0:
        return x
    onset = x[..., :1, :, :]
    return (onset + a * (x - onset)).astype(np.float32)
