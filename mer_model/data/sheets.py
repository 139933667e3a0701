"""Coding spreadsheets (.xlsx via pandas/openpyxl, or .csv) -> validated clip rows with frame paths.

Shared by every real-dataset loader (``casme2.py``, ``samm.py``, ``smic.py``, ``casme3.py``, ``mmew.py``).
They differ only in what a ``SheetSpec`` holds: the released column headers, subject-folder names, where a
clip's frames are, frame-file names, whether an apex or AU column exists, the release's known bad cells.
Row numbers in messages are the spreadsheet's own (1-based, as Excel / a text editor shows them), so a user
can go straight to the bad cell; columns are named by their released header.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mer_model.data.au import parse_au_string
from mer_model.data.classes import OBJECTIVE_CLASSES, normalise_emotion, objective_class
from mer_model.errors import InputError

_IMAGE = re.compile(r"(\d+)\.(?:jpe?g|png|bmp|tiff?)$", re.IGNORECASE)


@dataclass(frozen=True)
class Column:
    """A released column: ``label`` as the release spells it (for messages), ``names`` the accepted headers
    (lower case, letters and digits only: "Onset Frame" and "OnsetFrame" are both ``onsetframe``)."""

    label: str
    names: tuple[str, ...]


# The coding-sheet header CASME II and SAMM both release ("Objective Class" optional: a user's column)
CASME_SAMM_COLUMNS = {
    "subject": Column("Subject", ("subject",)),
    "filename": Column("Filename", ("filename",)),
    "onset": Column("Onset Frame", ("onsetframe",)),
    "apex": Column("Apex Frame", ("apexframe",)),
    "offset": Column("Offset Frame", ("offsetframe",)),
    "aus": Column("Action Units", ("actionunits",)),
    "emotion": Column("Estimated Emotion", ("estimatedemotion",)),
    "objective": Column("Objective Class", ("objectiveclass", "objectiveclasses")),
}
CASME_SAMM_REQUIRED = ("subject", "filename", "onset", "apex", "offset", "aus", "emotion")


@dataclass(frozen=True)
class SheetSpec:
    """What one dataset's coding spreadsheet and frame folders look like (see each loader's docstring).

    ``columns`` maps the keys subject, filename, onset, offset and optionally apex, aus, emotion,
    objective to their released columns; ``required`` are the keys a sheet must have. ``clip_folders(root,
    subject_dir, filename, cell)`` lists where a row's frames may be, the released place first
    (``cell(key)`` reads another cell of the row). ``fixes``: known bad cells of the release, {(subject
    dir, filename, released onset): {key: corrected value}}, applied and listed as repairs.
    """

    dataset: str
    columns: dict[str, Column]
    required: tuple[str, ...]
    subject_dir: Callable[[object], str]
    subject_examples: str  # for "not a subject id" messages, e.g. "1 / 01 / sub01"
    clip_folders: Callable[[Path, str, str, Callable[[str], object]], list[Path]]
    frame_hint: Callable[[str, str, int], str]  # (subject dir, filename, n) -> expected frame file name
    clip_id: Callable[[str, str, int], str] = lambda sdir, fname, onset: f"{sdir}/{fname}"
    emotions: tuple[str, ...] | None = None  # the (normalised) self-reports the release uses; None: any
    au_labelled: bool = True  # False: the release has no AU labels (SMIC)
    fixes: dict[tuple[str, str, int], dict[str, int]] = field(default_factory=dict)
    subject_folders: bool = True  # every subject folder under the root must have rows

    def label(self, key: str) -> str:
        return self.columns[key].label


def clip_folders_under_subject(root: Path, sdir: str, fname: str,
                               cell: Callable[[str], object]) -> list[Path]:
    """``<root>/<subject>/<filename>/`` (CASME II, SAMM)."""
    return [root / sdir / fname]


@dataclass(frozen=True)
class ClipRow:
    """One spreadsheet row resolved to its three frame files."""

    row: int  # 1-based spreadsheet row
    subject: str
    clip: str  # unique clip id, "<subject>/<filename>" (CAS(ME)^3 adds the onset)
    frames: tuple[Path, Path, Path]  # onset, apex, offset
    aus: frozenset[int]
    objective: str  # "I".."VII": released class column when present, else derived from the AUs; "" (SMIC)
    emotion: str
    au_labelled: bool = True  # False: no AU annotation (SMIC), ``aus`` is empty and is no label


def _norm(cell: object) -> str:
    return re.sub(r"[^a-z0-9]", "", str(cell).lower())


def read_table(path: Path):
    """The sheet as a header-less DataFrame of objects (header row located later)."""
    import pandas as pd

    try:
        if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
            return pd.read_excel(path, header=None, dtype=object)
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path, header=None, dtype=object, keep_default_na=True)
    except Exception as err:  # noqa: BLE001 - any parse failure is the user's file, reported in one line
        kind = type(err).__name__
        raise InputError(f"{path}: unreadable spreadsheet ({kind}); expected .xlsx or .csv") from None
    raise InputError(f"{path}: unsupported spreadsheet type {path.suffix!r}; expected .xlsx or .csv")


def _int_cell(value: object) -> int | None:
    """Frame number in a cell; None for an empty / "/" cell; ValueError for anything else."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    s = str(value).strip()
    if s in ("", "/", "-", "nan"):
        return None
    f = float(s)
    if not f.is_integer():
        raise ValueError(s)
    return int(f)


def _frame_index(folder: Path, where: str) -> dict[int, Path]:
    out = {}
    try:
        entries = list(folder.iterdir())
    except OSError as e:  # unreadable clip folder (permissions), or a folder that vanished
        raise InputError(f"{where}: clip folder {folder} cannot be listed ({e.strerror or e}); expected a "
                         "readable folder of frames") from None
    for p in entries:
        m = _IMAGE.search(p.name)
        if m:
            out[int(m.group(1))] = p
    return out


def read_rows(sheet: Path, frames_root: Path, spec: SheetSpec) -> tuple[list[ClipRow], list[str]]:
    """Validated rows of a coding spreadsheet and the repairs applied (empty apex -> middle frame, ...).

    Raises InputError (file + row + released column) for missing columns, bad cells, frames with no
    image, unknown AU codes or emotions, duplicate clips, subject folders without rows.
    """
    table = read_table(sheet)
    header_row, col = _header(table, sheet, spec)
    rows: list[ClipRow] = []
    repairs: list[str] = []
    seen: set[str] = set()
    index_cache: dict[Path, dict[int, Path]] = {}
    for i in range(header_row + 1, len(table)):
        cells = table.iloc[i].tolist()
        if all(_empty(c) for c in cells):
            continue  # blank line (trailing rows of an .xlsx)
        row = _row(_Cells(cells, col, spec, sheet, i + 1), frames_root, index_cache, repairs)
        if row.clip in seen:
            raise InputError(f"{sheet}: row {row.row}: clip {row.clip} appears twice; expected one row per "
                             "clip")
        seen.add(row.clip)
        rows.append(row)
    if repairs:  # the data itself is odd: said where the user sees it, and kept in meta["repairs"]
        warnings.warn(f"{sheet}: {len(repairs)} cell(s) repaired: {'; '.join(repairs[:5])}"
                      + (" ..." if len(repairs) > 5 else ""), stacklevel=2)
    if not rows:
        raise InputError(f"{sheet}: no clip rows below the header (row {header_row + 1}); "
                         "expected one row per clip")
    if spec.subject_folders:
        _check_subject_folders(rows, frames_root, spec.subject_dir, sheet)
    return rows, repairs


def _empty(c: object) -> bool:
    return c is None or (isinstance(c, float) and c != c) or str(c).strip() == ""


@dataclass
class _Cells:
    """One spreadsheet row: its cells by key (``get``), the spec, and where it is (for messages)."""

    cells: list
    col: dict[str, int]
    spec: SheetSpec
    sheet: Path
    r: int  # 1-based row
    fixed: dict[str, int] = field(default_factory=dict)  # released cells replaced by a known fix

    def get(self, key: str) -> object:
        if key in self.fixed:
            return self.fixed[key]
        j = self.col.get(key)
        return None if j is None else self.cells[j]

    def where(self) -> str:
        return f"{self.sheet}: row {self.r}"


def _row(c: _Cells, frames_root: Path, index_cache: dict[Path, dict[int, Path]],
         repairs: list[str]) -> ClipRow:
    """Row ``c`` resolved: clip folder, known fixes, frame numbers, frame files, AUs, classes, emotion."""
    spec = c.spec
    emotion = _emotion(c)  # first: MMEW finds the clip folder by it
    sdir, fname, folder = _clip_folder(c, frames_root)
    _apply_fixes(c, sdir, fname, repairs)
    if folder not in index_cache:
        index_cache[folder] = _frame_index(folder, c.where())
    index = index_cache[folder]
    frames = _frame_numbers(c, index, repairs)
    paths = []
    for key, n in zip(("onset", "apex", "offset"), frames, strict=True):
        if n not in index:
            label = spec.label(key) if key in spec.columns else "apex (middle frame)"
            expected = folder / spec.frame_hint(sdir, fname, n)
            raise InputError(f"{c.where()}: {label} {n}: no image {expected}; "
                             "expected a frame file with that number in the clip folder")
        paths.append(index[n])
    aus: frozenset[int] = frozenset()
    if spec.au_labelled:
        try:
            aus = parse_au_string(c.get("aus"))
        except ValueError as err:
            raise InputError(f"{c.where()}: {spec.label('aus')}: {err}") from None
    objective = objective_class(aus) if spec.au_labelled else ""
    if "objective" in c.col:
        objective = _class_cell(c.get("objective"), objective, c)
    return ClipRow(c.r, sdir, spec.clip_id(sdir, fname, frames[0]), tuple(paths), aus, objective,
                   emotion, spec.au_labelled)


def _apply_fixes(c: _Cells, sdir: str, fname: str, repairs: list[str]) -> None:
    """Known bad cells of the release (``SheetSpec.fixes``), matched on subject, clip and released onset."""
    if not c.spec.fixes:
        return
    try:
        onset = _int_cell(c.get("onset"))
    except ValueError:
        return  # reported by _frame_numbers
    for key, value in c.spec.fixes.get((sdir, fname, onset), {}).items():
        old = c.get(key)
        c.fixed[key] = value
        repairs.append(f"row {c.r}: {c.spec.label(key)} {old} -> {value} (known error of the release)")


def _emotion(c: _Cells) -> str:
    """The row's normalised self-report; one of ``spec.emotions`` when the spec names them."""
    spec = c.spec
    if "emotion" not in spec.columns:
        return ""
    value = c.get("emotion")
    emo = "" if _empty(value) else normalise_emotion(value)
    if spec.emotions is not None and emo not in spec.emotions:
        raise InputError(f"{c.where()}: {spec.label('emotion')} {value!r} is not an emotion of "
                         f"{spec.dataset}; expected one of {', '.join(spec.emotions)}")
    return emo


def _header(table: Any, sheet: Path, spec: SheetSpec) -> tuple[int, dict[str, int]]:
    """(index of the header row, key -> column index); the spec's required columns present."""
    expected = ", ".join(spec.label(k) for k in spec.required)
    header_row = None
    for i in range(min(len(table), 60)):  # SAMM puts title rows above its header
        cells = {_norm(c) for c in table.iloc[i].tolist()}
        if "subject" in cells and "filename" in cells:
            header_row = i
            break
    if header_row is None:
        raise InputError(f"{sheet}: no header row with 'Subject' and 'Filename' in the first 60 rows; "
                         f"expected columns {expected}")
    found: dict[str, int] = {}
    for j, n in enumerate(_norm(c) for c in table.iloc[header_row].tolist()):
        found.setdefault(n, j)
    col = {key: next(found[n] for n in c.names if n in found)
           for key, c in spec.columns.items() if any(n in found for n in c.names)}
    missing = [spec.label(k) for k in spec.required if k not in col]
    if missing:
        raise InputError(f"{sheet}: row {header_row + 1}: missing column(s) {', '.join(missing)}; "
                         f"expected columns {expected}")
    return header_row, col


def _clip_folder(c: _Cells, frames_root: Path) -> tuple[str, str, Path]:
    """(subject folder name, clip folder name, clip folder) of row ``c``; the folder must exist."""
    spec = c.spec
    subj_cell, fname = c.get("subject"), c.get("filename")
    if _empty(fname):
        raise InputError(f"{c.where()}: empty {spec.label('filename')}; expected a clip folder name")
    try:
        sdir = spec.subject_dir(subj_cell)
    except (ValueError, TypeError):
        raise InputError(f"{c.where()}: {spec.label('subject')} {subj_cell!r} is not a subject id; "
                         f"expected a subject such as {spec.subject_examples}") from None
    fname = str(fname).strip()
    if fname in ("", ".", "..") or Path(fname).name != fname or "\\" in fname:
        # an absolute path or ../../.. would read frames outside the dataset folder
        raise InputError(f"{c.where()}: {spec.label('filename')} {fname!r} is not a clip folder name; "
                         "expected one folder name inside the subject folder (no /, \\ or ..)")
    candidates = spec.clip_folders(frames_root, sdir, fname, c.get)
    folder = next((f for f in candidates if f.is_dir()), None)
    if folder is None:
        raise InputError(f"{c.where()}: clip folder {candidates[0]} does not exist; expected "
                         f"{candidates[0].relative_to(frames_root)}/ under {frames_root} with the frames")
    return sdir, fname, folder


def _frame_numbers(c: _Cells, index: dict[int, Path], repairs: list[str]) -> tuple[int, int, int]:
    """(onset, apex, offset) of row ``c``; a bad offset / apex is repaired and the repair noted. Without an
    apex column (SMIC) the apex is the middle frame (onset + offset) // 2, the stated rule, not a repair."""
    spec = c.spec
    frames: dict[str, int | None] = {}
    for key in ("onset", "apex", "offset"):
        if key not in spec.columns:
            frames[key] = None
            continue
        try:
            frames[key] = _int_cell(c.get(key))
        except ValueError:
            raise InputError(f"{c.where()}: {spec.label(key)} {c.get(key)!r} is not a frame "
                             "number; expected an integer") from None
    onset, apex, offset = frames["onset"], frames["apex"], frames["offset"]
    if onset is None:
        raise InputError(f"{c.where()}: {spec.label('onset')} is empty; expected an integer frame number")
    if offset is None or offset <= onset:  # known bad offsets in released sheets: use the last frame
        why = "" if offset in (None, 0) else f" (coded {offset}, not after onset {onset})"
        offset = max(index) if index else onset
        repairs.append(f"row {c.r}: offset -> last frame {offset}{why}")
    if "apex" not in spec.columns:
        apex = (onset + offset) // 2
        if apex == onset:
            raise InputError(f"{c.where()}: {spec.label('offset')} {offset} leaves no frame after "
                             f"{spec.label('onset')} {onset} for the apex; expected onset + 2 <= offset")
        return onset, apex, offset
    if apex is None or not onset <= apex <= offset:
        apex = (onset + offset) // 2
        repairs.append(f"row {c.r}: apex -> middle frame {apex}")
        if apex == onset:  # the repair would leave a clip with no motion: refuse, never train on it
            raise InputError(f"{c.where()}: no frame after {spec.label('onset')} {onset} to serve as apex "
                             f"(offset {offset}); expected onset < apex <= offset")
    return onset, apex, offset


def _check_subject_folders(rows: list[ClipRow], frames_root: Path, subject_dir: Callable[[object], str],
                           sheet: Path) -> None:
    """Every subject folder under ``frames_root`` has rows (a folder without any is a spreadsheet error)."""
    with_rows = {row.subject for row in rows}
    for d in sorted(p for p in frames_root.iterdir() if p.is_dir()):
        try:
            is_subject = subject_dir(d.name) == d.name
        except ValueError:
            is_subject = False
        if is_subject and d.name not in with_rows:
            raise InputError(f"{sheet}: subject {d.name} ({d}) has no clips in the spreadsheet; "
                             "expected rows for every subject folder (or remove the folder)")


_ROMAN = {str(i + 1): c for i, c in enumerate(OBJECTIVE_CLASSES)}


def _class_cell(value: object, fallback: str, c: _Cells) -> str:
    """Released objective-class cell ("1".."7" or "I".."VII"); empty -> derived from AUs."""
    if _empty(value):
        return fallback
    s = str(value).strip().upper().removeprefix("CLASS").strip()
    s = _ROMAN.get(s.removesuffix(".0"), s)
    if s not in OBJECTIVE_CLASSES:
        raise InputError(f"{c.where()}: {c.spec.label('objective')} {value!r}; expected 1-7 or I-VII")
    return s
