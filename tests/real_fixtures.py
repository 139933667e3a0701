"""Small datasets in the released CASME II / SAMM / SMIC-E HS / CAS(ME)^3 / MMEW layouts, built from a real
face photo (tests, benchmarks).

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


SMIC_SHEET = "SMIC-HS-E_annotation.xlsx"
CASME3_SHEET = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
MMEW_SHEET = "MMEW_Micro_Exp.xlsx"
_SMIC_CODE = {"negative": "ne", "positive": "po", "surprise": "sur"}
_MOTION = {"negative": "4", "positive": "12", "surprise": ""}  # what the fixture's warp animates


def _write_frames(base, folder: Path, names: list[str], subject: int, i: int, aus: str) -> None:
    """Onset, apex, offset images (``names``: their file names), plus a copy of the onset as a 4th frame."""
    imgs = _clip_images(base, subject, i, aus)
    for name, img in zip(names[:3], imgs, strict=True):
        _save(img, folder / name)
    if len(names) > 3:
        _save(imgs[0], folder / names[3])


def smic_clips(n_subjects: int = 3, clips_per_subject: int = 2) -> list[FixtureClip]:
    """SMIC clips: emotion negative / positive / surprise, no AUs, onset/offset 10 frames apart."""
    emos = list(_SMIC_CODE)
    out = []
    for s in range(1, n_subjects + 1):
        for c in range(clips_per_subject):
            onset = 69000 + 40 * c + 7 * s
            out.append(FixtureClip(s, "", onset, onset + 5, onset + 10, "", emos[(s + c) % 3]))
    return out


def write_smic(root: Path, clips: list[FixtureClip] | None = None) -> Path:
    """SMIC-E HS layout: ``root/SMIC-HS-E_annotation.xlsx`` + ``root/s01/s1_ne_01/image069017.jpg``.
    The apex (not in the sheet) is the middle frame the loader picks; that frame carries the motion."""
    import pandas as pd

    clips = clips or smic_clips()
    base = _base_face()
    records, per_kind = [], {}
    for i, c in enumerate(clips):
        k = per_kind[(c.subject, c.emotion)] = per_kind.get((c.subject, c.emotion), 0) + 1
        fname = c.filename or f"s{c.subject}_{_SMIC_CODE[c.emotion]}_{k:02d}"
        mid = (c.onset + c.offset) // 2
        names = [f"image{n:06d}.jpg" for n in (c.onset, mid, c.offset, c.onset + 1)]
        _write_frames(base, root / f"s{c.subject:02d}" / fname, names, c.subject, i, _MOTION[c.emotion])
        records.append({"Subject": c.subject, "Filename": fname, "OnsetF": c.onset, "OffsetF": c.offset,
                        "TotalMF1": c.offset - c.onset + 1, "Onset2F": None, "Offset2F": None,
                        "TotalMF2": None, "Onset3F": None, "Offset3F": None, "TotalMF3": None,
                        "Emotion": c.emotion, "FirstF": c.onset - 5, "LastF": c.offset + 5,
                        "TotalVL": c.offset - c.onset + 11})
    root.mkdir(parents=True, exist_ok=True)
    sheet = root / SMIC_SHEET
    pd.DataFrame.from_records(records).to_excel(sheet, index=False)
    return sheet


def casme3_clips(n_subjects: int = 3) -> list[FixtureClip]:
    """Two micro-expressions in one video per subject (video ``a``), one in video ``b`` / ``J``."""
    out = []
    for s in range(1, n_subjects + 1):
        out += [FixtureClip(s, "a", 100, 105, 111, "12", "happy"),
                FixtureClip(s, "a", 300, 305, 311, "4", "disgust"),
                FixtureClip(s, "J" if s == 1 else "b", 40, 45, 51, "T18+4" if s == 2 else "4+L12", "Others")]
    return out


def write_casme3(root: Path, clips: list[FixtureClip] | None = None) -> Path:
    """CAS(ME)^3 part A layout: sheet ``label`` of ``root/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`` +
    ``root/spNO.1/a/color/100.jpg`` (a video folder holds every micro-expression of that video)."""
    import pandas as pd

    clips = clips or casme3_clips()
    base = _base_face()
    records = []
    for i, c in enumerate(clips):
        subject = f"spNO.{c.subject}"
        names = [f"{n}.jpg" for n in (c.onset, c.apex, c.offset, c.onset + 1)]
        _write_frames(base, root / subject / c.filename.lower() / "color", names, c.subject, i, c.aus)
        records.append({"Subject": subject, "Filename": c.filename, "Onset": c.onset, "Apex": c.apex,
                        "Offset": c.offset, "AU": c.aus, "Objective class": None, "emotion": c.emotion})
    root.mkdir(parents=True, exist_ok=True)
    sheet = root / CASME3_SHEET
    with pd.ExcelWriter(sheet) as w:
        pd.DataFrame.from_records(records).to_excel(w, sheet_name="label", index=False)
        pd.DataFrame().to_excel(w, sheet_name="Sheet1", index=False)
    return sheet


def mmew_clips(n_subjects: int = 3) -> list[FixtureClip]:
    kinds = [("12", "happiness"), ("4", "disgust"), ("4+L12", "others"), ("1+2", "surprise")]
    return [FixtureClip(s, "", 10 + 3 * c, 15 + 3 * c, 21 + 3 * c, *kinds[(s + c) % 4])
            for s in range(1, n_subjects + 1) for c in range(2)]


def write_mmew(root: Path, clips: list[FixtureClip] | None = None) -> Path:
    """MMEW layout: ``root/MMEW_Micro_Exp.xlsx`` + ``root/Micro_Expression/happiness/S01-01-001/10.jpg``;
    the ``others`` clips in a ``repression`` folder, as the release notes name it."""
    import pandas as pd

    clips = clips or mmew_clips()
    base = _base_face()
    # the EmotionIndex digits of the clip names are the fixture's (the release notes give no table)
    emo_index = {"happiness": 1, "surprise": 2, "anger": 3, "disgust": 4, "fear": 5, "sadness": 6,
                 "others": 7}
    records, per_kind = [], {}
    for i, c in enumerate(clips):
        k = per_kind[(c.subject, c.emotion)] = per_kind.get((c.subject, c.emotion), 0) + 1
        fname = c.filename or f"S{c.subject:02d}-{emo_index[c.emotion]:02d}-{k:03d}"
        folder_emo = "repression" if c.emotion == "others" else c.emotion
        names = [f"{n}.jpg" for n in (c.onset, c.apex, c.offset, c.onset + 1)]
        _write_frames(base, root / "Micro_Expression" / folder_emo / fname, names, c.subject, i, c.aus)
        records.append({"Subject": f"S{c.subject:02d}", "Filename": fname, "OnsetFrame": c.onset,
                        "ApexFrame": c.apex, "OffsetFrame": c.offset, "Action Units": c.aus,
                        "Estimated Emotion": c.emotion, "remarks": None})
    root.mkdir(parents=True, exist_ok=True)
    sheet = root / MMEW_SHEET
    pd.DataFrame.from_records(records).to_excel(sheet, index=False)
    return sheet
