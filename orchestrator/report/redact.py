"""No machine paths in a report: absolute paths shortened to their last component.

A report goes into a paper's supplement or a repository; the folders of the machine that made it (a
``/tmp`` tracking store, a home directory) say nothing to a reader and leak the author's layout. URLs keep
their host; ``sqlite:////tmp/x/mlflow.db`` becomes ``sqlite:///…/mlflow.db``.
"""

from __future__ import annotations

import re

# an absolute POSIX path: "/" not preceded by a word character, dot or tilde (so not the "//" of a URL's
# host, whose first component holds a ":" or is followed by the host), then one or more folders
_ABS_PATH = re.compile(r"(?<![\w.~-])/(?:[\w.+~@-]+/)+(?=[\w.+~@-])")
_HOME = re.compile(r"(?<![\w./])~/(?:[\w.+@-]+/)*(?=[\w.+@-])")


def redact_paths(text: str) -> str:
    """Every absolute (or ``~/``) path's folders replaced by ``…/``; the file name stays."""
    return _HOME.sub("…/", _ABS_PATH.sub("…/", text))
