"""Coding spreadsheets (.xlsx via pandas/openpyxl, or .csv) -> validated clip rows with frame paths.

Shared by the CASME II and SAMM loaders, which only differ in file names, subject-folder names and
frame-file names (``casme2.py``, ``samm.py``). Row numbers in messages are the spreadsheet's own (1-based,
as Excel / a text editor shows them), so a user can go straight to the bad cell.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mer_model.data.au import parse_au_string
from mer_model.data.classes import OBJECTIVE_CLASSES, normalise_emotion, objective_class
from mer_model.errors import InputError

REQUIRED = {
    "subject": "Subject",
    "filename": "Filename",
    "onsetframe": "Onset Frame",
    "apexframe": "Apex Frame",
    "offsetframe": "Offset Frame",
    "actionunits": "Action Units",
    "estimatedemotion": "Estimated Emotion",
}
_OPTIONAL_CLASS = ("objectiveclass", "objectiveclasses")
_IMAGE = re.compile(r"(\d+)\.(?:jpe?g|png|bmp|tiff?)$", re.IGNORECASE)


@dataclass(frozen=True)
class ClipRow:
    """One spreadsheet row resolved to its three frame files."""

    row: int  # 1-based spreadsheet row
    subject: str
    clip: str  # unique clip id "<subject>/<filename>"
    frames: tuple[Path, Path, Path]  # onset, apex, offset
    aus: frozenset[int]
    objective: str  # "I".."VII": released class column when present, else derived from the AUs
    emotion: str


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


def read_rows(
    sheet: Path,
    frames_root: Path,
    *,
    subject_dir: Callable[[object], str],
    frame_hint: Callable[[str, str, int], str],
) -> tuple[list[ClipRow], list[str]]:
    """Validated rows of a coding spreadsheet and the repairs applied (empty apex -> middle frame, ...).

    ``subject_dir(cell)`` -> folder name of a subject (e.g. ``sub01``, ``006``); ``frame_hint(subject_dir,
    filename, n)`` -> the expected frame file name, for error messages.
    Raises InputError (file + row) for missing columns, frames with no image, unknown AU codes, subject
    folders without rows.
    """
    table = read_table(sheet)
    header_row, col = _header(table, sheet)
    class_col = next((col[k] for k in _OPTIONAL_CLASS if k in col), None)
    rows: list[ClipRow] = []
    repairs: list[str] = []
    seen: set[str] = set()
    index_cache: dict[Path, dict[int, Path]] = {}
    for i in range(header_row + 1, len(table)):
        r = i + 1
        cells = table.iloc[i].tolist()
        if all(c is None or (isinstance(c, float) and c != c) or str(c).strip() == "" for c in cells):
            continue  # blank line (trailing rows of an .xlsx)
        sdir, fname, folder = _clip_folder(cells, col, frames_root, subject_dir, sheet, r)
        if folder not in index_cache:
            index_cache[folder] = _frame_index(folder, f"{sheet}: row {r}")
        index = index_cache[folder]
        frames = _frame_numbers(cells, col, index, sheet, r, repairs)
        paths = []
        for label, n in zip(("Onset Frame", "Apex Frame", "Offset Frame"), frames, strict=True):
            if n not in index:
                expected = folder / frame_hint(sdir, fname, n)
                raise InputError(f"{sheet}: row {r}: {label} {n}: no image {expected}; "
                                 "expected a frame file with that number in the clip folder")
            paths.append(index[n])
        try:
            aus = parse_au_string(cells[col["actionunits"]])
        except ValueError as err:
            raise InputError(f"{sheet}: row {r}: Action Units: {err}") from None
        objective = objective_class(aus)
        if class_col is not None:
            objective = _class_cell(cells[class_col], objective, sheet, r)
        clip = f"{sdir}/{fname}"
        if clip in seen:
            raise InputError(f"{sheet}: row {r}: clip {clip} appears twice; expected one row per clip")
        seen.add(clip)
        rows.append(ClipRow(r, sdir, clip, tuple(paths), aus, objective,
                            normalise_emotion(cells[col["estimatedemotion"]])))
    if repairs:  # the data itself is odd: said where the user sees it, and kept in meta["repairs"]
        warnings.warn(f"{sheet}: {len(repairs)} cell(s) repaired: {'; '.join(repairs[:5])}"
                      + (" ..." if len(repairs) > 5 else ""), stacklevel=2)
    if not rows:
        raise InputError(f"{sheet}: no clip rows below the header (row {header_row + 1}); "
                         "expected one row per clip")
    _check_subject_folders(rows, frames_root, subject_dir, sheet)
    return rows, repairs


def _header(table: Any, sheet: Path) -> tuple[int, dict[str, int]]:
    """(index of the header row, normalised column name -> column index); the required columns present."""
    header_row = None
    for i in range(min(len(table), 60)):  # SAMM puts title rows above its header
        cells = {_norm(c) for c in table.iloc[i].tolist()}
        if "subject" in cells and "filename" in cells:
            header_row = i
            break
    if header_row is None:
        raise InputError(f"{sheet}: no header row with 'Subject' and 'Filename' in the first 60 rows; "
                         f"expected columns {', '.join(REQUIRED.values())}")
    col: dict[str, int] = {}
    for j, n in enumerate(_norm(c) for c in table.iloc[header_row].tolist()):
        col.setdefault(n, j)
    missing = [label for key, label in REQUIRED.items() if key not in col]
    if missing:
        raise InputError(f"{sheet}: row {header_row + 1}: missing column(s) {', '.join(missing)}; "
                         f"expected columns {', '.join(REQUIRED.values())}")
    return header_row, col


def _clip_folder(cells: list, col: dict[str, int], frames_root: Path, subject_dir: Callable[[object], str],
                 sheet: Path, r: int) -> tuple[str, str, Path]:
    """(subject folder name, clip folder name, clip folder) of spreadsheet row ``r``, which must exist."""
    subj_cell, fname = cells[col["subject"]], cells[col["filename"]]
    if fname is None or (isinstance(fname, float) and fname != fname):
        raise InputError(f"{sheet}: row {r}: empty Filename; expected a clip folder name")
    try:
        sdir = subject_dir(subj_cell)
    except (ValueError, TypeError):
        raise InputError(f"{sheet}: row {r}: Subject {subj_cell!r} is not a subject id; "
                         "expected a number such as 1 / 01 / sub01 / 006") from None
    fname = str(fname).strip()
    if fname in ("", ".", "..") or Path(fname).name != fname or "\\" in fname:
        # an absolute path or ../../.. would read frames outside the dataset folder
        raise InputError(f"{sheet}: row {r}: Filename {fname!r} is not a clip folder name; expected one "
                         "folder name inside the subject folder (no /, \\ or ..)")
    folder = frames_root / sdir / fname
    if not folder.is_dir():
        raise InputError(f"{sheet}: row {r}: clip folder {folder} does not exist; "
                         f"expected <root>/{sdir}/{fname}/ with the frames")
    return sdir, fname, folder


def _frame_numbers(cells: list, col: dict[str, int], index: dict[int, Path], sheet: Path, r: int,
                   repairs: list[str]) -> tuple[int, int, int]:
    """(onset, apex, offset) of row ``r``; a bad offset / apex is repaired and the repair noted."""
    frames = {}
    for key in ("onsetframe", "apexframe", "offsetframe"):
        try:
            frames[key] = _int_cell(cells[col[key]])
        except ValueError:
            raise InputError(f"{sheet}: row {r}: {REQUIRED[key]} {cells[col[key]]!r} is not a frame "
                             "number; expected an integer") from None
    onset, apex, offset = frames["onsetframe"], frames["apexframe"], frames["offsetframe"]
    if onset is None:
        raise InputError(f"{sheet}: row {r}: Onset Frame is empty; expected an integer frame number")
    if offset is None or offset <= onset:  # known bad offsets in released sheets: use the last frame
        why = "" if offset in (None, 0) else f" (coded {offset}, not after onset {onset})"
        offset = max(index) if index else onset
        repairs.append(f"row {r}: offset -> last frame {offset}{why}")
    if apex is None or not onset <= apex <= offset:
        apex = (onset + offset) // 2
        repairs.append(f"row {r}: apex -> middle frame {apex}")
        if apex == onset:  # the repair would leave a clip with no motion: refuse, never train on it
            raise InputError(f"{sheet}: row {r}: no frame after Onset Frame {onset} to serve as apex "
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


def _class_cell(value: object, fallback: str, sheet: Path, r: int) -> str:
    """Released objective-class cell ("1".."7" or "I".."VII"); empty -> derived from AUs."""
    if value is None or (isinstance(value, float) and value != value) or str(value).strip() == "":
        return fallback
    s = str(value).strip().upper().removeprefix("CLASS").strip()
    s = _ROMAN.get(s.removesuffix(".0"), s)
    if s not in OBJECTIVE_CLASSES:
        raise InputError(f"{sheet}: row {r}: Objective Class {value!r}; expected 1-7 or I-VII")
    return s
