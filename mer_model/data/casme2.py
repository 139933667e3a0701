"""CASME II in its released layout: ``CASME2-coding-*.xlsx`` (or .csv) + ``<root>/sub01/EP02_01f/img46.jpg``.

Columns: Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, Action Units, Estimated Emotion (extra
``Unnamed:`` columns are ignored). 26 subjects, 255 (or 256) rows. There is no objective-class column in
the release: the class is derived from the AU string with the objective-class table (``classes.py``);
an ``Objective Class`` column, when a user adds one, wins.
"""

from __future__ import annotations

import re
from pathlib import Path

from mer_model.data.sheets import (
    CASME_SAMM_COLUMNS,
    CASME_SAMM_REQUIRED,
    ClipRow,
    SheetSpec,
    clip_folders_under_subject,
    read_rows,
)

FAMILY = "casme2"
SHEET_PATTERNS = ("CASME2-coding*.xlsx", "CASME2-coding*.csv", "CASME2*.xlsx", "CASME2*.csv")

# the released header, the same in CASME II's and SAMM's coding sheets (sheets.py holds it once)
COLUMNS, REQUIRED = CASME_SAMM_COLUMNS, CASME_SAMM_REQUIRED


def subject_dir(cell: object) -> str:
    """1 / "01" / "sub01" -> "sub01"."""
    m = re.fullmatch(r"(?:sub)?0*(\d+)(?:\.0)?", str(cell).strip(), flags=re.IGNORECASE)
    if m is None:
        raise ValueError(cell)
    return f"sub{int(m.group(1)):02d}"


def frame_name(subject: str, filename: str, n: int) -> str:
    return f"img{n}.jpg"


def rows(sheet: Path, frames_root: Path) -> tuple[list[ClipRow], list[str]]:
    return read_rows(sheet, frames_root, SPEC)


SPEC = SheetSpec(dataset=FAMILY, columns=COLUMNS, required=REQUIRED, subject_dir=subject_dir,
                 subject_examples="1 / 01 / sub01",
                 clip_folders=clip_folders_under_subject, frame_hint=frame_name)
