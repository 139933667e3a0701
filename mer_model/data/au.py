"""FACS action-unit strings from the coding spreadsheets -> sets of AU numbers.

Released strings look like ``4+L10``, ``R12+L14A``, ``1+2``, ``R4B+R7``, ``12 or 14``, ``AU4+AU7``,
``25+26+(38)``: a side prefix (L/R/B/U for left/right/bilateral/unilateral), an intensity suffix (A-E), an
optional ``AU`` prefix, brackets for uncertain codes. Side and intensity are dropped, the AU number kept.
CAS(ME)^3 part A also writes a ``T`` prefix (``T28+14``, ``T18``) whose meaning its release does not
document: it is dropped like a side prefix (our reading).
"X or Y" means the coder could not tell: both are kept (the clip shows one of them; for the objective
class table it is the union of what may be present).
"""

from __future__ import annotations

import re

# FACS 2002 codes: action units 1, 2, 4-46 (there is no AU3, and none in 47-49), head and eye positions
# 50-58 and 61-66, visibility / gross behaviour codes 69-85. Anything else is a typo (e.g. "AU99")
FACS_CODES = frozenset({1, 2, *range(4, 47), *range(50, 59), *range(61, 67), *range(69, 86)})
_TOKEN = re.compile(r"^(?:AU)?[LRBUT]?(?:AU)?(\d{1,2})[A-E]?$", re.IGNORECASE)


def parse_au_string(text: object) -> frozenset[int]:
    """AU numbers in a spreadsheet cell. Raises ``ValueError`` (plain, the loader adds file/row) if a
    token is not an AU code. Empty / NaN / "none" cells give an empty set."""
    if text is None:
        return frozenset()
    if isinstance(text, float):
        if text != text:  # NaN: empty cell
            return frozenset()
        text = str(int(text)) if text.is_integer() else str(text)
    s = str(text).strip()
    if s.lower() in ("", "none", "nan", "-", "/"):
        return frozenset()
    out: set[int] = set()
    for token in re.split(r"\+|,|;|\s+or\s+|/|\s+", s, flags=re.IGNORECASE):
        token = token.strip().strip("()[]?").strip()
        if not token or token.lower() == "or":
            continue
        m = _TOKEN.match(token)
        if m is None:
            raise ValueError(f"{token!r} is not an AU code (e.g. 4, L10, R12A, AU14)")
        if int(m.group(1)) not in FACS_CODES:
            raise ValueError(f"{token!r}: AU{int(m.group(1))} is not a FACS action unit (there is no AU3, "
                             "AU47-49, ...); expected a code such as 4, L10, R12A, AU14")
        out.add(int(m.group(1)))
    return frozenset(out)


def au_name(n: int) -> str:
    return f"AU{n}"


def multi_hot(au_sets: list[frozenset[int]], au_numbers: tuple[int, ...]):
    """(N, len(au_numbers)) float32 multi-hot matrix."""
    import numpy as np

    index = {a: j for j, a in enumerate(au_numbers)}
    out = np.zeros((len(au_sets), len(au_numbers)), dtype=np.float32)
    for i, s in enumerate(au_sets):
        for a in s:
            if a in index:
                out[i, index[a]] = 1.0
    return out
