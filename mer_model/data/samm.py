"""SAMM in its released layout: ``SAMM_Micro_FACS_Codes_v2.xlsx`` + ``<root>/006/006_1_2/006_05562.jpg``.

The sheet has title rows first; the header (Subject, Filename, Inducement Code, Onset Frame, Apex Frame,
Offset Frame, Duration, Type, Action Units, Notes, Estimated Emotion) is found by searching for the row
holding "Subject" and "Filename" (row 13 in the released file). 32 subjects, 159 rows. Objective classes
are released separately: add them as an ``Objective Class`` column (1-7 or I-VII) to use them; otherwise
they are derived from the AU string.
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

FAMILY = "samm"
SHEET_PATTERNS = ("SAMM_Micro_FACS_Codes*.xlsx", "SAMM_Micro_FACS_Codes*.csv", "SAMM*.xlsx", "SAMM*.csv")

# the released header, the same in CASME II's and SAMM's coding sheets (sheets.py holds it once)
COLUMNS, REQUIRED = CASME_SAMM_COLUMNS, CASME_SAMM_REQUIRED


def subject_dir(cell: object) -> str:
    """6 / "006" -> "006"."""
    m = re.fullmatch(r"0*(\d+)(?:\.0)?", str(cell).strip())
    if m is None:
        raise ValueError(cell)
    return f"{int(m.group(1)):03d}"


def frame_name(subject: str, filename: str, n: int) -> str:
    return f"{subject}_{n:05d}.jpg"


def rows(sheet: Path, frames_root: Path) -> tuple[list[ClipRow], list[str]]:
    return read_rows(sheet, frames_root, SPEC)


SPEC = SheetSpec(dataset=FAMILY, columns=COLUMNS, required=REQUIRED, subject_dir=subject_dir,
                 subject_examples="6 / 006",
                 clip_folders=clip_folders_under_subject, frame_hint=frame_name)
