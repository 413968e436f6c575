"""The report's HTML building blocks: its stylesheet and small escaping / table / image helpers
(plain functions of strings and paths; `report.py` assembles the sections from them)."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1250px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.seen td:first-child { border-left: 4px solid #1f77b4; } tr.unseen td:first-child { border-left: 4px solid #ff7f0e; }
pre { background: #f7f7f7; padding: 0.7em; overflow-x: auto; font-size: 0.85em; border: 1px solid #e3e3e3; }
img { max-width: 100%; border: 1px solid #eee; } .note { color: #8a4b00; background: #fff6e5; padding: 0.4em 0.7em; }
.muted { color: #666; font-size: 0.9em; } nav a { margin-right: 1em; }
"""


def esc(x) -> str:
    return html.escape(str(x))


def pct(x) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * float(x):.2f}"


def img(png: Path, alt: str) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return f'<p><img alt="{esc(alt)}" src="data:image/png;base64,{data}"></p>'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def kv_table(d: dict, table_id: str) -> str:
    rows = []
    for k, v in d.items():
        if isinstance(v, (dict, list)):  # e.g. env.json's data: class lists would fill the page
            v = json.dumps(v[:8] + [f"... {len(v) - 8} more"] if isinstance(v, list) and len(v) > 8 else v)
            v = v if len(v) <= 300 else v[:300] + f" ... ({len(v)} characters in all: see the file)"
        rows.append(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>")
    return f'<table id="{table_id}">' + "".join(rows) + "</table>"
