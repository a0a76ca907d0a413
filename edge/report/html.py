"""report.html: one self-contained page (styles and images inline, no script, no network), print-friendly."""

from __future__ import annotations

import base64
from html import escape

from edge.report.content import Check, Figure, Image, Section, Table, fmt

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;max-width:1100px;margin:0 auto;
padding:1em 1.5em}
h1{font-size:1.6em;margin:.2em 0}h2{border-bottom:2px solid #4c78a8;padding-bottom:.15em;margin-top:1.6em}
h3{font-size:1.02em;margin:1em 0 .3em}
table{border-collapse:collapse;margin:.4em 0 .8em;font-size:12.5px}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#eef2f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.src,td.sha{color:#555;font-size:11.5px;word-break:break-all}
.mark{display:inline-block;min-width:3.2em;text-align:center;border-radius:3px;font-weight:600;padding:0 4px}
.pass{background:#d8f0d2;color:#1e6b12}.warn{background:#fde3c4;color:#8a4600}.na{background:#e6e6e6;color:#555}
.basis{font-size:11px;border-radius:3px;padding:0 4px;background:#eef;color:#335}
.basis.estimated{background:#fff3cd;color:#7a5b00}.basis.measured{background:#d8f0d2;color:#1e6b12}
.basis.cited{background:#e3e8ff;color:#23308a}
figure{display:inline-block;margin:.4em 1em .8em 0;vertical-align:top}
figure img{max-width:min(100%,620px);height:auto;border:1px solid #ddd}
figcaption{font-size:11.5px;color:#555;max-width:700px}
.problems{background:#fff4e5;border-left:4px solid #f0a020;padding:.3em .8em}
.intro{color:#333}nav a{margin-right:.8em}.muted{color:#666;font-size:12px}
@media print{body{max-width:none;font-size:11px}nav{display:none}section{break-before:auto}
h2{break-after:avoid}figure,table{break-inside:avoid}a{color:inherit;text-decoration:none}}
"""


def _mark(m: str) -> str:
    return f'<span class="mark {"na" if m == "n/a" else m}">{escape(m)}</span>'


def _figures(figures: list[Figure]) -> str:
    rows = "".join(
        f"<tr><td>{escape(f.label)}</td><td class=num>{escape(f.text())}</td>"
        f'<td><span class="basis {escape(f.basis)}">{escape(f.basis)}</span></td>'
        f"<td class=src>{escape(f.source)}{'<br>sha256 ' + escape(f.sha256) if f.sha256 else ''}</td></tr>"
        for f in figures)
    return f"<table><tr><th>figure</th><th>value</th><th>basis</th><th>source</th></tr>{rows}</table>"


def _checks(checks: list[Check]) -> str:
    rows = "".join(
        f"<tr><td>{_mark(c.mark)}</td><td>{escape(c.name)}</td><td class=num>{escape(fmt(c.value))}</td>"
        f"<td>{escape(c.threshold)}</td><td class=src>{escape(c.detail)}</td></tr>" for c in checks)
    return (f"<table><tr><th>mark</th><th>check</th><th>value</th><th>threshold</th><th>detail</th></tr>{rows}"
            "</table>")


def _table(t: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in t.header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in t.rows)
    note = f'<div class="muted">{escape(t.note)}</div>' if t.note else ""
    return f"<h3>{escape(t.title)}</h3><table><tr>{head}</tr>{body}</table>{note}"


def _image(i: Image) -> str:
    data = base64.b64encode(i.png).decode("ascii")
    sha = f"; sha256 {i.sha256}" if i.sha256 else ""
    return (f'<figure><img alt="{escape(i.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption><b>{escape(i.title)}</b>: {escape(i.source)}{escape(sha)}</figcaption></figure>")


def section_html(sec: Section) -> str:
    """One section as HTML."""
    parts = [f'<section id="{escape(sec.id)}"><h2>{escape(sec.title)}</h2>']
    if sec.intro:
        parts.append(f'<p class="intro">{escape(sec.intro)}</p>')
    if sec.problems:
        parts.append('<div class="problems"><b>Missing or not current:</b><ul>'
                     + "".join(f"<li>{escape(p)}</li>" for p in sec.problems) + "</ul></div>")
    if sec.checks:
        parts.append(_checks(sec.checks))
    if sec.figures:
        parts.append(_figures(sec.figures))
    parts += [_image(i) for i in sec.images]
    parts += [_table(t) for t in sec.tables]
    parts.append("</section>")
    return "\n".join(parts)


def render(title: str, subtitle: str, sections: list[Section]) -> str:
    """The whole page."""
    nav = "".join(f'<a href="#{escape(s.id)}">{escape(s.title)}</a>' for s in sections)
    body = "\n".join(section_html(s) for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f'<body><h1>{escape(title)}</h1><p class="muted">{escape(subtitle)}</p><nav>{nav}</nav>\n'
            f"{body}\n</body></html>\n")
