"""dlib 68-point landmarks for onset / apex / offset frames, with the paper's crop-size augmentation.

Per clip (Sec. IV-A): the face is detected ONCE, on the onset frame, and the 68-point predictor runs on
onset, apex and offset inside that one box (the head barely moves in a 1/5 s micro-expression, and one box
keeps the three point sets consistent: a box that moves between frames shows up as fake motion). For
training views, the frame is cropped around the face at several sizes, each crop is resized to a fixed
side and the face re-detected there; the small differences between those detections act as label-free
noise augmentation ("the aligned frames are cropped to get the frames of different sizes, and then we
detect the landmarks of these frames"). Frames are not re-aligned here: CASME II / SAMM release cropped,
near-frontal faces.

The predictor file ships in ``face-recognition-models``; its ``__init__`` imports ``pkg_resources``
(absent on new venvs), so the file is located with ``importlib.util.find_spec`` (stack-notes).
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mer_model.errors import InputError

#: crop side / detected box side for the augmentation views (each gives one extra training view)
DEFAULT_CROP_SCALES: tuple[float, ...] = (1.3, 1.6, 2.0)
#: side (pixels) every augmentation crop is resized to before re-detection
CROP_SIDE = 200


def predictor_path() -> Path:
    """Path of dlib's ``shape_predictor_68_face_landmarks.dat`` inside ``face_recognition_models``."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "face_recognition_models: package not installed; expected `pip install face-recognition-models`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise InputError(f"{path}: predictor file missing; expected the face-recognition-models wheel")
    return path


@functools.lru_cache(maxsize=2)
def _load_predictor(path: str):  # the ~100 MB model loads in ~1 s: once per process, not per clip
    import dlib

    return dlib.shape_predictor(path)


def read_image(path: Path, *, where: str = "") -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 image; unreadable files raise InputError naming ``where`` and the path."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # a decompression bomb (a small file that decodes to gigapixels) is an error, not a warning:
            # PIL only warns between MAX_IMAGE_PIXELS and twice that, then decodes it
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im = im.convert("RGB") if im.mode not in ("L", "RGB") else im
                return np.asarray(im, dtype=np.uint8).copy()
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning,
            ValueError) as err:
        prefix = f"{where}: " if where else ""
        raise InputError(
            f"{prefix}{path}: unreadable image ({type(err).__name__}); expected a JPEG/PNG/BMP frame"
        ) from None


class Extractor:
    """dlib HOG face detector + 68-point shape predictor.

    ``upsample``: how many times the detector upsamples the image (0 finds faces >= ~80 px, 1 >= ~40 px
    at ~4x the cost).
    """

    def __init__(self, *, upsample: int = 0, path: Path | None = None) -> None:
        import dlib

        self._dlib = dlib
        self.upsample = upsample
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = _load_predictor(str(path or predictor_path()))

    def detect(self, image: np.ndarray, *, path: object, where: str = ""):
        """The highest-scoring face box (dlib.rectangle); none -> InputError naming the frame."""
        boxes, scores, _ = self.detector.run(image, self.upsample, 0.0)
        if len(boxes) == 0:
            prefix = f"{where}: " if where else ""
            raise InputError(f"{prefix}{path}: no face found; expected one frontal face on the onset frame")
        return boxes[int(np.argmax(scores))]

    def try_detect(self, image: np.ndarray):
        boxes, scores, _ = self.detector.run(image, self.upsample, 0.0)
        return boxes[int(np.argmax(scores))] if len(boxes) else None

    def predict(self, image: np.ndarray, box) -> np.ndarray:
        """(68, 2) float32 points (x, y) in pixels, dlib-68 indexing."""
        shape = self.predictor(image, box)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def clip(
        self,
        images: Sequence[np.ndarray],
        *,
        onset_path: object,
        where: str = "",
        detect_every_frame: bool = False,
    ) -> np.ndarray:
        """(3, 68, 2) landmarks of onset/apex/offset, face detected on the onset frame only.

        ``detect_every_frame=True`` is the baseline the benchmark compares against (and less consistent).
        """
        box = self.detect(images[0], path=onset_path, where=where)
        out = []
        for k, img in enumerate(images):
            b = box
            if detect_every_frame and k > 0:
                b = self.try_detect(img) or box
            out.append(self.predict(img, b))
        return np.stack(out)

    def crop_views(
        self, images: Sequence[np.ndarray], box_points: np.ndarray, scales: Sequence[float]
    ) -> np.ndarray:
        """(K, 3, 68, 2) crop-size augmentation views, in the ORIGINAL frame's pixel coordinates.

        ``box_points`` (68, 2) are the onset points; the crop is centred on their bounding box. For each
        scale the three frames are cropped identically, resized to ``CROP_SIDE`` and the face re-detected
        once (onset crop; falls back to the mapped original box when the detector misses at that scale).
        """
        from PIL import Image

        dlib = self._dlib
        h, w = images[0].shape[:2]
        lo, hi = box_points.min(0), box_points.max(0)
        cx, cy = (lo + hi) / 2
        side0 = float(max(hi - lo))
        views = []
        for s in scales:
            half = s * side0 / 2
            x0, y0 = int(max(0, round(cx - half))), int(max(0, round(cy - half)))
            x1, y1 = int(min(w, round(cx + half))), int(min(h, round(cy + half)))
            sx, sy = (x1 - x0) / CROP_SIDE, (y1 - y0) / CROP_SIDE
            crops = [
                np.asarray(Image.fromarray(img[y0:y1, x0:x1]).resize((CROP_SIDE, CROP_SIDE), Image.BILINEAR))
                for img in images
            ]
            box = self.try_detect(crops[0])
            if box is None:  # map the landmark bounding box into the crop instead
                (bx0, by0), (bx1, by1) = (lo - (x0, y0)) / (sx, sy), (hi - (x0, y0)) / (sx, sy)
                box = dlib.rectangle(int(bx0), int(by0), int(bx1), int(by1))
            pts = np.stack([self.predict(c, box) for c in crops])
            pts[..., 0] = pts[..., 0] * sx + x0  # back to original-frame pixels
            pts[..., 1] = pts[..., 1] * sy + y0
            views.append(pts)
        return np.stack(views).astype(np.float32)


def extract_rows(
    rows: Sequence,
    *,
    sheet: Path,
    crop_scales: Sequence[float] = DEFAULT_CROP_SCALES,
    upsample: int = 0,
    detect_every_frame: bool = False,
    progress=None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Landmarks of spreadsheet rows (``sheets.ClipRow``): ((N, 3, 68, 2), (N, K, 3, 68, 2) or None).

    K = len(crop_scales). ``progress`` (optional) is called once per clip. Raises InputError naming the
    spreadsheet row and frame for unreadable images and onset frames without a face.
    """
    extractor = Extractor(upsample=upsample)
    lms, views = [], []
    for row in rows:
        where = f"{sheet}: row {row.row}"
        images = [read_image(p, where=where) for p in row.frames]
        if len({im.shape for im in images}) != 1:
            raise InputError(f"{where}: frames of {row.clip} differ in size; expected one camera resolution")
        pts = extractor.clip(images, onset_path=row.frames[0], where=where,
                             detect_every_frame=detect_every_frame)
        lms.append(pts)
        if crop_scales:
            views.append(extractor.crop_views(images, pts[0], crop_scales))
        if progress is not None:
            progress()
    landmarks = np.stack(lms).astype(np.float32)
    return landmarks, (np.stack(views).astype(np.float32) if crop_scales else None)
