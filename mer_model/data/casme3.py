"""CAS(ME)^3 part A in its released layout: ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`` +
``<root>/spNO.1/a/color/355.jpg``.

The label sheet (sheet ``label``, checked on the file the release's maintainers publish in
``github.com/jingtingEmmaLi/CAS-ME-3``, ``annotation/partA/``) has the columns Subject (``spNO.1``),
Filename (the subject's video, a letter ``a``..``m``), Onset, Apex, Offset (frame numbers = the jpg
index), AU (FACS codes), Objective class (I..VII) and emotion (happy, disgust, fear, anger, sad, surprise,
others). 860 rows from 94 subjects. A video holds several micro-expressions, so one (Subject, Filename)
appears in up to 57 rows: the clip id is ``<subject>/<video>/<onset>``. Frames are the whole video's, in
``<root>/<subject>/<video>/color/<n>.jpg`` (depth maps beside them in ``depth/``, not read); the sheet sits
in the root or in ``<root>/annotation/``. Filename cells are lower-cased (one row has ``J``), as MEB does.

Known bad cells of the v2 sheet, corrected with the values MEB uses (``tvaranka/meb``,
``Casme3.data_frame``) and listed in ``meta["repairs"]``: spNO.149 d apex 83 -> 160 (before its onset 112),
spNO.216 d onset 3647 -> 2647 (after its apex), spNO.214 c offset 3460 -> 34, spNO.40 e offsets 0 -> 1845
and 2403, spNO.216 e onset 0 -> 1 (no frame 0; MEB also sets its apex to 1, we leave the apex 0 to the
middle-frame repair). The ``T`` prefix of five AU cells (``T28``, ``T18``, ``T24``) is read as the AU
number, like a side prefix (its meaning is not documented in the release: our reading).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from mer_model.data.sheets import ClipRow, Column, SheetSpec, read_rows

FAMILY = "casme3"
SHEET_PATTERNS = ("cas(me)3_part_A_ME_label*.xlsx", "cas(me)3_part_A_ME_label*.csv",
                  "annotation/cas(me)3_part_A_ME_label*.xlsx", "annotation/cas(me)3_part_A_ME_label*.csv")
COLUMNS = {
    "subject": Column("Subject", ("subject",)),
    "filename": Column("Filename", ("filename",)),
    "onset": Column("Onset", ("onset", "onsetframe")),
    "apex": Column("Apex", ("apex", "apexframe")),
    "offset": Column("Offset", ("offset", "offsetframe")),
    "aus": Column("AU", ("au", "aus", "actionunits")),
    "objective": Column("Objective class", ("objectiveclass", "objectiveclasses")),
    "emotion": Column("emotion", ("emotion", "estimatedemotion")),
}
REQUIRED = ("subject", "filename", "onset", "apex", "offset", "aus", "emotion")
# as released: happy, disgust, fear, anger, sad, surprise, others (normalised: happiness, sadness)
EMOTIONS = ("happiness", "disgust", "fear", "anger", "sadness", "surprise", "others")
# (subject, video, onset as released) -> corrected cells (MEB's values; see the module docstring)
FIXES = {
    ("spNO.149", "d", 112): {"apex": 160},
    ("spNO.216", "d", 3647): {"onset": 2647},
    ("spNO.214", "c", 5): {"offset": 34},
    ("spNO.40", "e", 1812): {"offset": 1845},
    ("spNO.40", "e", 2327): {"offset": 2403},
    ("spNO.216", "e", 0): {"onset": 1},
}


def subject_dir(cell: object) -> str:
    """"spNO.1" / "spno.01" / 1 -> "spNO.1"."""
    m = re.fullmatch(r"(?:spno\.?)?0*(\d+)(?:\.0)?", str(cell).strip(), flags=re.IGNORECASE)
    if m is None:
        raise ValueError(cell)
    return f"spNO.{int(m.group(1))}"


def clip_folders(root: Path, sdir: str, fname: str, cell: Callable[[str], object]) -> list[Path]:
    """``<root>/<subject>/<video>/color/`` (video lower-cased), then as written, then without ``color/``."""
    low = fname.lower()
    return [root / sdir / low / "color", root / sdir / fname / "color", root / sdir / low]


def frame_name(subject: str, filename: str, n: int) -> str:
    return f"{n}.jpg"


def clip_id(sdir: str, fname: str, onset: int) -> str:
    return f"{sdir}/{fname.lower()}/{onset}"


SPEC = SheetSpec(dataset=FAMILY, columns=COLUMNS, required=REQUIRED, subject_dir=subject_dir,
                 subject_examples="spNO.1", clip_folders=clip_folders, frame_hint=frame_name, clip_id=clip_id,
                 emotions=EMOTIONS, fixes=FIXES)


def rows(sheet: Path, frames_root: Path) -> tuple[list[ClipRow], list[str]]:
    return read_rows(sheet, frames_root, SPEC)
