"""report.md: the same sections as GitHub-flavoured Markdown for CI job summaries (tables only, no HTML)."""

from __future__ import annotations

import re

from edge.report.content import Section, Table, fmt

_MARK = {"pass": "PASS", "warn": "WARN", "n/a": "n/a"}


def _text(text: object) -> str:
    """Plain text that GitHub will not read as an HTML tag ('<stage>' -> '&lt;stage>')."""
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", str(text))


def _cell(text: object) -> str:
    return _text(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def section_md(sec: Section, tables: bool = True) -> str:
    """One section as Markdown (`tables=False` leaves out the long detail tables)."""
    out = [f"## {sec.title}", ""]
    if sec.intro:
        out += [_text(sec.intro), ""]
    if sec.problems:
        out += [f"- **missing or not current**: {_cell(p)}" for p in sec.problems] + [""]
    if sec.checks:
        rows = [[_MARK[c.mark], c.name, fmt(c.value), c.threshold, c.detail] for c in sec.checks]
        out += [*_table(["mark", "check", "value", "threshold", "detail"], rows), ""]
    if sec.figures:
        rows = [[f.label, f.text(), f.basis, f.source + (f" (sha256 {f.sha256[:12]})" if f.sha256 else "")]
                for f in sec.figures]
        out += [*_table(["figure", "value", "basis", "source"], rows), ""]
    if sec.images:
        out += ["Plots in report.html: " + ", ".join(i.title for i in sec.images) + ".", ""]
    for t in sec.tables if tables else ():
        out += _table_block(t)
    return "\n".join(out)


def _table_block(t: Table) -> list[str]:
    note = ["", f"_{_text(t.note)}_"] if t.note else []
    return [f"**{_text(t.title)}**", "", *_table(t.header, t.rows), *note, ""]


def render(title: str, subtitle: str, sections: list[Section]) -> str:
    """The whole report.md."""
    return "\n".join([f"# {title}", "", subtitle, "", *(section_md(s) for s in sections)]) + "\n"
