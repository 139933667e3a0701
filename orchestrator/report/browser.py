"""Open ``report.html`` in a real headless Chromium: check that it renders, and take a screenshot.

No browser driver library: Chromium's own ``--dump-dom`` prints the DOM after the page's load event. A copy
of the page gets a small checking script first in its ``<head>``: it records every script error and, on
load, writes a JSON verdict into the DOM (images, how many are broken, i.e. not complete or
``naturalWidth == 0``; tables and rows, and how many have no rendered height; whether any HTML from a
name leaked into a table as an element). The report itself stays script-free.

Chromium comes from the distribution's packages (``apt-get install chromium``; ``.ci/run`` installs it).
Its flags keep it off the network and out of the user's profile.

    python -m orchestrator.report.browser REPORT.html [SCREENSHOT.png]
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
_CHECK = """<script>
window.__merErrors = [];
window.addEventListener("error", (e) => window.__merErrors.push(String(e.message || e)), true);
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const tables = [...document.querySelectorAll("table")];
  const out = {
    images: imgs.length,
    broken_images: imgs.filter((i) => !i.complete || i.naturalWidth === 0).map((i) => i.alt),
    tables: tables.length,
    rows: tables.map((t) => t.rows.length),
    empty_tables: tables.filter((t) => t.getBoundingClientRect().height === 0).length,
    html_in_cells: document.querySelectorAll("td b, td i, td script, td img").length,
    errors: window.__merErrors,
    text: document.body.innerText,
  };
  const pre = document.createElement("pre");
  pre.id = "mer-check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def available() -> bool:
    """Whether the distribution's Chromium is installed."""
    return Path(CHROMIUM).is_file()


def _run(args: list[str], timeout: float) -> str:
    with tempfile.TemporaryDirectory(prefix="mer-chromium-") as profile:
        res = subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if res.returncode != 0:
        raise RuntimeError(f"chromium exited {res.returncode}: {res.stderr.strip().splitlines()[-1:]}")
    return res.stdout


def check_page(html_path: Path, timeout: float = 60) -> dict[str, Any]:
    """Load a checking copy of ``html_path`` (beside it, so relative links resolve the same) and return
    the verdict: ``images``, ``broken_images`` (alt texts), ``tables``, ``rows`` (per table),
    ``empty_tables``, ``html_in_cells``, ``errors`` (script errors), ``text`` (the page's visible text)."""
    html_path = Path(html_path).resolve()
    page = html_path.read_text()
    fd, name = tempfile.mkstemp(prefix=".check-", suffix=".html", dir=html_path.parent)
    probe = Path(name)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(page.replace("<head>", "<head>\n" + _CHECK, 1))
        dom = _run(["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()], timeout)
    finally:
        probe.unlink(missing_ok=True)
    m = re.search(r'<pre id="mer-check">(.*?)</pre>', dom, re.S)
    if m is None:
        raise RuntimeError("the page never fired its load event (no verdict in the DOM)")
    return json.loads(html.unescape(m.group(1)))


def screenshot(
    html_path: Path, png: Path, width: int = 1280, height: int = 1800, timeout: float = 60
) -> Path:
    """A PNG of the top of the page as Chromium draws it (for the docs)."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    _run([f"--screenshot={png}", f"--window-size={width},{height}", Path(html_path).resolve().as_uri()],
         timeout)
    return png


def main(argv: list[str]) -> int:
    """``python -m orchestrator.report.browser REPORT.html [SCREENSHOT.png]``: print the verdict."""
    if not available() or shutil.which(CHROMIUM) is None:
        print(f"error: {CHROMIUM} is not installed; allowed: apt-get install chromium", file=sys.stderr)
        return 2
    verdict = check_page(Path(argv[0]))
    verdict.pop("text")
    print(json.dumps(verdict))
    if len(argv) > 1:
        print(screenshot(Path(argv[0]), Path(argv[1])))
    bad = verdict["broken_images"] or verdict["errors"] or verdict["empty_tables"]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
