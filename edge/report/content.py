"""What a report is made of, independent of how it is rendered: sections of figures, checks, tables, images.

Every figure says where it comes from: `basis` is measured, estimated (with its band), cited or
recorded (a stage's own figure, read from the manifest), and `source` names the manifest key or
artifact, with the artifact's sha256 from the manifest when there is one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Basis = Literal["measured", "estimated", "cited", "recorded", "given"]
Mark = Literal["pass", "warn", "n/a"]


@dataclass(frozen=True)
class Figure:
    """One number (or short text) with its unit and provenance."""

    label: str
    value: Any
    unit: str = ""
    basis: Basis = "recorded"
    source: str = ""
    sha256: str | None = None
    band: tuple[float, float] | None = None  # absolute low/high of an estimate

    def text(self) -> str:
        """The value with its unit (and band) as people read it."""
        value = fmt(self.value)
        band = f" ({fmt(self.band[0])}-{fmt(self.band[1])})" if self.band else ""
        return f"{value}{band} {self.unit}".strip()


@dataclass(frozen=True)
class Check:
    """A measured value judged against a stated threshold."""

    name: str
    value: Any
    threshold: str
    mark: Mark
    detail: str = ""


@dataclass(frozen=True)
class Table:
    """A small table: header row and text rows."""

    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass(frozen=True)
class Image:
    """A PNG with what it shows and where its data come from."""

    title: str
    png: bytes
    source: str
    sha256: str | None = None


@dataclass
class Section:
    """One part of the page."""

    id: str
    title: str
    intro: str = ""
    figures: list[Figure] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what is missing or stale, said plainly

    def to_json(self) -> dict[str, Any]:
        """Plain data for report.json (images by title and source, not their bytes)."""
        return {
            "id": self.id,
            "title": self.title,
            "figures": [asdict(f) for f in self.figures],
            "checks": [asdict(c) for c in self.checks],
            "tables": [asdict(t) for t in self.tables],
            "images": [{"title": i.title, "source": i.source, "sha256": i.sha256, "png_bytes": len(i.png)}
                       for i in self.images],
            "problems": list(self.problems),
        }


def mark(passed: bool | None) -> Mark:
    """pass / warn, or n/a when there was nothing to judge."""
    return "n/a" if passed is None else ("pass" if passed else "warn")


def fmt(value: Any) -> str:
    """Numbers as people read them: thousands separators, 4 significant digits for fractions."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "-"}[value]
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.4g}"
    return str(value)
