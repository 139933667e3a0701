"""SMIC-HS in its released SMIC-E layout: ``SMIC-HS-E_annotation.xlsx`` +
``<root>/s01/s1_ne_01/image559700.jpg``.

The root is the release's ``HS_long/SMIC-HS-E`` folder (subject folders ``s01``..``s20``, one folder per
clip named ``s<subject>_<ne|po|sur>_<nn>``, frames ``image<6-digit frame number>.jpg``) with the annotation
sheet in it (or given as ``spreadsheet=``). Columns read: Subject, Filename, OnsetF, OffsetF, Emotion
(negative / positive / surprise); the sheet's other columns (TotalMF1, Onset2F / Offset2F, Onset3F /
Offset3F for a second and third micro-expression in the same clip, FirstF, LastF, TotalVL) are not read:
one clip per row, its first interval. The older ``SMIC_all_raw`` / ``SMIC_all_cropped`` layout,
``<root>/s1/micro/negative/s1_ne_01/``, is accepted too when the SMIC-E folder is absent.

SMIC has **no AU labels** (every clip ``au_labelled`` False, empty AU set, no objective class: only the
``megc3`` setup) and **no apex**: the loader uses the middle frame, ``apex = (onset + offset) // 2`` (integer
division), as MEB (``tvaranka/meb``, ``Smic.data_frame``) and the MEGC2019 practice do. That frame must exist
in the clip folder like the onset and offset frames.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from mer_model.data.sheets import ClipRow, Column, SheetSpec, read_rows

FAMILY = "smic"
SHEET_PATTERNS = ("SMIC-HS-E_annotation*.xlsx", "SMIC-HS-E_annotation*.csv", "SMIC-HS*.xlsx", "SMIC-HS*.csv",
                  "SMIC*.xlsx", "SMIC*.csv")
COLUMNS = {
    "subject": Column("Subject", ("subject",)),
    "filename": Column("Filename", ("filename",)),
    "onset": Column("OnsetF", ("onsetf", "onsetframe", "onset")),
    "offset": Column("OffsetF", ("offsetf", "offsetframe", "offset")),
    "emotion": Column("Emotion", ("emotion",)),
}
REQUIRED = ("subject", "filename", "onset", "offset", "emotion")
EMOTIONS = ("negative", "positive", "surprise")


def subject_dir(cell: object) -> str:
    """1 / "01" / "s1" / "s01" -> "s01"."""
    m = re.fullmatch(r"(?:s)?0*(\d+)(?:\.0)?", str(cell).strip(), flags=re.IGNORECASE)
    if m is None:
        raise ValueError(cell)
    return f"s{int(m.group(1)):02d}"


def clip_folders(root: Path, sdir: str, fname: str, cell: Callable[[str], object]) -> list[Path]:
    """SMIC-E ``<root>/s01/<clip>/`` first, then SMIC's ``<root>/s1/micro/<emotion>/<clip>/``."""
    emotion = str(cell("emotion") or "").strip().lower()
    return [root / sdir / fname, root / f"s{int(sdir[1:])}" / "micro" / emotion / fname]


def frame_name(subject: str, filename: str, n: int) -> str:
    return f"image{n:06d}.jpg"


SPEC = SheetSpec(dataset=FAMILY, columns=COLUMNS, required=REQUIRED, subject_dir=subject_dir,
                 subject_examples="1 / 01 / s1 / s01", clip_folders=clip_folders, frame_hint=frame_name,
                 emotions=EMOTIONS, au_labelled=False)


def rows(sheet: Path, frames_root: Path) -> tuple[list[ClipRow], list[str]]:
    return read_rows(sheet, frames_root, SPEC)
