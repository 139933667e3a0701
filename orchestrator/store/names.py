"""File and folder names made from user-chosen names (arms, experiments): safe, bounded and distinct.

An arm name is free text (``GTS-GN+LAM+AAU``, ``P Q``, 300 characters, ``..``). Turned into a file name
naively, ``P+Q`` and ``P Q`` both become ``P_Q`` (one arm's figure overwrites the other's), a long name
exceeds the file system's 255 bytes, and ``..`` climbs out of the folder it should be in.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable

MAX_STEM = 100  # characters of the readable part; the whole name stays far below 255 bytes


def _tag(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def safe_name(name: str) -> str:
    """A file-name-safe form of ``name``: ``[A-Za-z0-9._-]`` only, no leading dot (no ``.``/``..``, no
    hidden file), at most :data:`MAX_STEM` + 9 characters. Lossy: when characters were replaced or the
    name cut, an 8-hex hash of the original is appended, so two different long names never share one."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).lstrip("._").rstrip("_")
    if len(clean) > MAX_STEM or not clean:
        return f"{clean[:MAX_STEM]}_{_tag(str(name))}".lstrip("_")
    return clean


def distinct_names(names: Iterable[str]) -> dict[str, str]:
    """``safe_name`` of every name, with an 8-hex hash of the original appended wherever two different
    names would share one (``P+Q`` and ``P Q``): distinct names always get distinct file names."""
    names = list(dict.fromkeys(str(n) for n in names))
    by_safe: dict[str, list[str]] = defaultdict(list)
    for n in names:
        by_safe[safe_name(n).lower()].append(n)  # lower(): case-insensitive file systems
    out = {}
    for n in names:
        s = safe_name(n)
        out[n] = f"{s}_{_tag(n)}" if len(by_safe[s.lower()]) > 1 else s
    return out
