"""``report.html``: the Markdown report as one self-contained web page.

The page is rendered from the very text of ``report.md`` (markdown-it, CommonMark + GFM tables), so the
two cannot disagree. Raw HTML in the Markdown is not passed through (``html=False``): an arm name like
``a<b>`` is shown as text, never parsed as a tag. Every figure (``<img src="figures/*.png">``) is embedded
as a ``data:`` URI, so the one file can be mailed or opened from anywhere; links to CSV / PDF / SVG / TeX
files stay relative and work next to the report folder. The page carries no script.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from markdown_it import MarkdownIt

_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #1b1b1b; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 13px; display: block; overflow-x: auto; }
th, td { border-top: 1px solid #bbb; border-bottom: 1px solid #bbb; padding: 3px 8px; text-align: left; }
th { border-bottom: 2px solid #333; background: #f4f4f4; }
blockquote { border-left: 4px solid #c60; margin: 1em 0; padding: 0.3em 1em; background: #fff6ed; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; }
code { background: #f2f2f2; padding: 0 3px; }
"""
_IMG = re.compile(r'<img src="([^"]+\.png)"')


def _embed_images(body: str, folder: Path) -> str:
    """``<img src="figures/x.png">`` -> ``<img src="data:image/png;base64,...">`` (file read from
    ``folder``); a missing file is left as it is (the browser test then reports it broken)."""

    def data_uri(m: re.Match[str]) -> str:
        path = folder / html.unescape(m.group(1))
        if not path.is_file():
            return m.group(0)
        return '<img src="data:image/png;base64,' + base64.b64encode(path.read_bytes()).decode("ascii") + '"'

    return _IMG.sub(data_uri, body)


def render_html(markdown_text: str, folder: Path, title: str) -> str:
    """The whole page: ``markdown_text`` rendered, figures under ``folder`` embedded."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    body = _embed_images(md.render(markdown_text), folder)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )
