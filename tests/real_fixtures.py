"""Small datasets in the released CASME II / SAMM layouts, built from a real face photo (tests, benchmarks).

The face is ``skimage.data.astronaut()`` cropped to 200 x 200 px around the face (dlib finds it at
upsample 0). Each subject gets its own small similarity warp and brightness; each clip's apex frame adds a
local displacement field (mouth corners up, or brows down) of a few pixels and the offset half of it, so
the real dlib path sees real images with small real motion. Only the onset/apex/offset frames and one
frame in between are written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

CROP = (slice(30, 230), slice(120, 320))  # rows, cols of the astronaut photo around the face
CASME2_SHEET = "CASME2-coding-20140508.xlsx"
SAMM_SHEET = "SAMM_Micro_FACS_Codes_v2.xlsx"


@dataclass(frozen=True)
class FixtureClip:
    subject: int
    filename: str
    onset: int
    apex: int
    offset: int
    aus: str
    emotion: str


def _base_face(full_frame: bool = False) -> tuple[np.ndarray, tuple[int, int]]:
    """The face image and the (x, y) offset of the 200 px crop inside it (0, 0 for the crop itself)."""
    import skimage.data

    photo = skimage.data.astronaut()
    if full_frame:  # 512 x 512, face ~90 px: detection cost closer to real 640 x 480 frames
        return photo, (CROP[1].start, CROP[0].start)
    return photo[CROP], (0, 0)


def _warp(image: np.ndarray, *, scale: float, angle_deg: float, shift: tuple[float, float],
          bumps: list[tuple[float, float, float, float]]) -> np.ndarray:
    """Similarity warp about the centre plus Gaussian displacement bumps (cx, cy, dy, radius) in px."""
    from scipy.ndimage import map_coordinates

    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = w / 2, h / 2
    a = np.deg2rad(angle_deg)
    # inverse map: output pixel -> input pixel
    x0, y0 = (xx - cx - shift[0]) / scale, (yy - cy - shift[1]) / scale
    src_x = np.cos(a) * x0 + np.sin(a) * y0 + cx
    src_y = -np.sin(a) * x0 + np.cos(a) * y0 + cy
    for bx, by, dy, r in bumps:
        g = np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * r**2))
        src_y = src_y - dy * g  # content moves by +dy where the bump is
    coords = np.stack([src_y, src_x])
    out = np.stack([map_coordinates(image[..., ch].astype(np.float64), coords, order=1, mode="nearest")
                    for ch in range(image.shape[2])], -1)
    return np.clip(out, 0, 255).astype(np.uint8)


def _clip_images(base: tuple[np.ndarray, tuple[int, int]], subject: int, clip_no: int,
                 aus: str) -> list[np.ndarray]:
    base, (ox, oy) = base
    rng = np.random.default_rng(1000 * subject + clip_no)
    scale = 1 + 0.03 * np.sin(subject)
    angle = 3 * np.cos(subject * 1.7)
    shift = (2 * np.sin(subject * 2.3), 2 * np.cos(subject * 0.9))
    gain = 0.9 + 0.2 * ((subject * 37) % 10) / 10
    # motion: mouth corners up for AU12, brows down for AU4 (positions in the 200 px crop)
    amp = 3.0 + rng.uniform(0, 1)
    bumps_apex = []
    if "12" in aus:
        bumps_apex += [(81 + ox, 110 + oy, -amp, 7), (125 + ox, 111 + oy, -amp, 7)]
    if "4" in aus:
        bumps_apex += [(82 + ox, 58 + oy, amp, 10), (130 + ox, 60 + oy, amp, 10)]
    frames = []
    for k in (0.0, 1.0, 0.5):  # onset, apex, offset
        jitter = (shift[0] + rng.normal(0, 0.3), shift[1] + rng.normal(0, 0.3))
        bumps = [(x, y, k * d, r) for x, y, d, r in bumps_apex]
        img = _warp(base, scale=scale, angle_deg=angle, shift=jitter, bumps=bumps)
        frames.append(np.clip(img.astype(np.float32) * gain, 0, 255).astype(np.uint8))
    return frames


def default_clips(n_subjects: int = 3, clips_per_subject: int = 2) -> list[FixtureClip]:
    kinds = [("12", "happiness"), ("4", "disgust"), ("4+L12", "others"), ("R12A", "happiness")]
    out = []
    for s in range(1, n_subjects + 1):
        for c in range(clips_per_subject):
            aus, emo = kinds[(s + c) % len(kinds)]
            onset = 10 + 7 * c
            out.append(FixtureClip(s, "", onset, onset + 5, onset + 11, aus, emo))
    return out


def _save(img: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=95)


def write_casme2(root: Path, clips: list[FixtureClip] | None = None, *, fmt: str = "xlsx",
                 full_frame: bool = False) -> Path:
    """CASME II layout: ``root/CASME2-coding-*.xlsx`` + ``root/sub01/EP02_01f/img46.jpg``. Returns sheet."""
    import pandas as pd

    clips = clips or default_clips()
    base = _base_face(full_frame)
    records = []
    for i, c in enumerate(clips):
        fname = c.filename or f"EP{2 + i:02d}_0{i % 9 + 1}f"
        folder = root / f"sub{c.subject:02d}" / fname
        imgs = _clip_images(base, c.subject, i, c.aus)
        for n, img in zip((c.onset, c.apex, c.offset), imgs, strict=True):
            _save(img, folder / f"img{n}.jpg")
        _save(imgs[0], folder / f"img{c.onset + 1}.jpg")
        records.append({"Subject": f"{c.subject:02d}", "Filename": fname, "Unnamed: 2": None,
                        "OnsetFrame": c.onset, "ApexFrame": c.apex, "OffsetFrame": c.offset,
                        "Action Units": c.aus, "Estimated Emotion": c.emotion})
    df = pd.DataFrame.from_records(records)
    sheet = root / (CASME2_SHEET if fmt == "xlsx" else CASME2_SHEET.replace(".xlsx", ".csv"))
    root.mkdir(parents=True, exist_ok=True)
    df.to_excel(sheet, index=False) if fmt == "xlsx" else df.to_csv(sheet, index=False)
    return sheet


def write_samm(root: Path, clips: list[FixtureClip] | None = None, *, full_frame: bool = False) -> Path:
    """SAMM layout: title rows, header on row 13, ``root/006/006_1_2/006_05562.jpg``. Returns sheet."""
    from openpyxl import Workbook

    clips = clips or default_clips()
    base = _base_face(full_frame)
    wb = Workbook()
    ws = wb.active
    ws.append(["SAMM Micro-Movement FACS Codes (fixture)"])
    for _ in range(11):
        ws.append([])
    ws.append(["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame",
               "Duration", "Type", "Action Units", "Notes", "Estimated Emotion"])
    for i, c in enumerate(clips):
        subject = f"{5 + c.subject:03d}"
        fname = c.filename or f"{subject}_{i % 7 + 1}_{i % 5 + 1}"
        folder = root / subject / fname
        onset = 5000 + 50 * c.onset
        frames = (onset, onset + (c.apex - c.onset), onset + (c.offset - c.onset))
        imgs = _clip_images(base, c.subject, i, c.aus)
        for n, img in zip(frames, imgs, strict=True):
            _save(img, folder / f"{subject}_{n:05d}.jpg")
        ws.append([int(subject), fname, 1, *frames, frames[2] - frames[0], "Micro - 1/2", c.aus, "",
                   c.emotion])
    root.mkdir(parents=True, exist_ok=True)
    sheet = root / SAMM_SHEET
    wb.save(sheet)
    return sheet
