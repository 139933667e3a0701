"""Regenerate ``mer_model/data/assets/astronaut_68.npy``: the dlib 68-point detection SynthME starts from.

Run: ``python scripts/make_template.py``. The photo is ``skimage.data.astronaut()`` (ships inside
scikit-image, no download); dlib's HOG detector finds the face (its highest-scoring box; a weak second box
on the suit patch is ignored) and the 68-point predictor places the points. Output: (68, 2) float32, pixel
(x, y) in the 512 x 512 photo, dlib-68 indexing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TEMPLATE_PATH = Path(__file__).resolve().parents[1] / "mer_model" / "data" / "assets" / "astronaut_68.npy"


def detect_astronaut() -> np.ndarray:
    """(68, 2) float32 dlib-68 points of the astronaut photo's face, pixels."""
    import skimage.data

    from mer_model.data.dlib_landmarks import Extractor

    image = skimage.data.astronaut()
    extractor = Extractor()
    box = extractor.detect(image, path="skimage.data.astronaut()")
    return extractor.predict(image, box)


def main() -> None:
    points = detect_astronaut()
    tmp = TEMPLATE_PATH.with_suffix(".tmp.npy")
    np.save(tmp, points)
    tmp.replace(TEMPLATE_PATH)
    print(f"wrote {TEMPLATE_PATH} {points.shape}")


if __name__ == "__main__":
    main()
