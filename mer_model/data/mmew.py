"""MMEW (micro-expressions) in its released layout: ``MMEW_Micro_Exp.xlsx`` +
``<root>/Micro_Expression/happiness/S01-01-001/1.jpg``.

The root is the release's ``MMEW_Final`` folder: the label sheet ``MMEW_Micro_Exp.xlsx`` and the
``Micro_Expression`` folder (``Macro_Expression`` is not read). Columns: Subject, Filename, OnsetFrame,
ApexFrame, OffsetFrame, Action Units (FACS codes), Estimated Emotion (happiness, surprise, anger,
disgust, fear, sadness, others); a ``remarks`` column is ignored (column names as MEB reads them,
``tvaranka/meb`` ``MMEW.data_frame``). Clip folders are named ``PersonIndex-EmotionIndex-SampleIndex``
(``S03-01-002``) and frames ``<frame index>.jpg`` (the MMEW release notes,
github.com/benxianyeteam/MMEW-Dataset). The clips are looked for in the two documented layouts, in this
order: ``Micro_Expression/<emotion>/<clip>/`` (MEB's path format) and
``Micro_Expression/<subject>/<emotion>/<clip>/`` (the release notes' "three-layer" description). The
release notes name the folder of the sheet's ``others`` clips ``repression``: both names are tried.
Subject ids are ``S01``-style (1 / "01" / "s1" -> "S01"); the subject is no folder level in MEB's layout,
so subject folders are not checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from mer_model.data.sheets import ClipRow, Column, SheetSpec, read_rows

FAMILY = "mmew"
SHEET_PATTERNS = ("MMEW_Micro_Exp*.xlsx", "MMEW_Micro_Exp*.csv", "MMEW*.xlsx", "MMEW*.csv")
COLUMNS = {
    "subject": Column("Subject", ("subject",)),
    "filename": Column("Filename", ("filename",)),
    "onset": Column("OnsetFrame", ("onsetframe",)),
    "apex": Column("ApexFrame", ("apexframe",)),
    "offset": Column("OffsetFrame", ("offsetframe",)),
    "aus": Column("Action Units", ("actionunits",)),
    "emotion": Column("Estimated Emotion", ("estimatedemotion",)),
    "objective": Column("Objective Class", ("objectiveclass", "objectiveclasses")),  # optional: a user's
}
REQUIRED = ("subject", "filename", "onset", "apex", "offset", "aus", "emotion")
EMOTIONS = ("happiness", "surprise", "anger", "disgust", "fear", "sadness", "others")
_FOLDER_ALIASES = {"others": ("others", "repression")}


def frames_root(root: Path) -> Path:
    """``<root>/Micro_Expression`` when the release folder has it, else the root itself."""
    micro = root / "Micro_Expression"
    return micro if micro.is_dir() else root


def subject_dir(cell: object) -> str:
    """1 / "01" / "s1" / "S01" -> "S01"."""
    m = re.fullmatch(r"(?:s)?0*(\d+)(?:\.0)?", str(cell).strip(), flags=re.IGNORECASE)
    if m is None:
        raise ValueError(cell)
    return f"S{int(m.group(1)):02d}"


def clip_folders(root: Path, sdir: str, fname: str, cell: Callable[[str], object]) -> list[Path]:
    """``<emotion>/<clip>/`` then ``<subject>/<emotion>/<clip>/``, the emotion folder as written and in lower
    case (and ``repression`` for ``others``)."""
    written = str(cell("emotion") or "").strip()
    names = dict.fromkeys([written, written.lower(), *_FOLDER_ALIASES.get(written.lower(), ())])
    return [root / e / fname for e in names] + [root / sdir / e / fname for e in names]


def frame_name(subject: str, filename: str, n: int) -> str:
    return f"{n}.jpg"


SPEC = SheetSpec(dataset=FAMILY, columns=COLUMNS, required=REQUIRED, subject_dir=subject_dir,
                 subject_examples="S01 / 1", clip_folders=clip_folders, frame_hint=frame_name,
                 emotions=EMOTIONS, subject_folders=False)


def rows(sheet: Path, frames_root: Path) -> tuple[list[ClipRow], list[str]]:
    return read_rows(sheet, frames_root, SPEC)
