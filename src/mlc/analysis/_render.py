"""Writing a report to disk: each table as CSV, each figure as PNG, and the same content as
`report.md` (next to its files) and as one `report.html` that needs nothing else to display (images
inlined as data URIs, no scripts, no external assets; its CSV names link to the files beside it).

The page fits any window from a phone's 390 px up: text wraps, figures shrink, and a table wider than
the page scrolls sideways inside its own box; long tables are folded until opened. The HTML comes from
Jinja2 templates in `templates/`.
"""

from __future__ import annotations

import base64
import functools
import io
import re
from collections.abc import Sequence
from pathlib import Path

import jinja2
import pandas as pd

from mlc.analysis._section import Section

__all__ = ["HTML_FILE", "MARKDOWN_FILE", "render_html", "render_markdown", "write_report"]

MARKDOWN_FILE = "report.md"
HTML_FILE = "report.html"
_DPI = 110
_ONE_NUMBER = r"(?:[-+]?[\d.,]+(?:e[-+]?\d+)?%?(?: ± [\d.]+%?)?|—)"
_NUMBER = re.compile(rf"{_ONE_NUMBER}(?: \({_ONE_NUMBER}\))?")  # "58% (87%)": ours (MLDS's)


def write_report(title: str, intro: Sequence[str], sections: Sequence[Section],
                 out_dir: Path) -> dict[str, Path]:
    """Write every table, figure and both pages under `out_dir`; returns file name -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    images: dict[str, bytes] = {}
    for section in sections:
        for table in section.tables:
            files[f"{table.name}.csv"] = _write(out_dir / f"{table.name}.csv",
                                                table.data.to_csv(index=False).encode())
        for figure in section.figures:
            buffer = io.BytesIO()
            figure.figure.savefig(buffer, format="png", dpi=_DPI)
            images[figure.name] = buffer.getvalue()
            files[f"{figure.name}.png"] = _write(out_dir / f"{figure.name}.png", images[figure.name])
    files[MARKDOWN_FILE] = _write(out_dir / MARKDOWN_FILE,
                                  render_markdown(title, intro, sections).encode())
    files[HTML_FILE] = _write(out_dir / HTML_FILE,
                              render_html(title, intro, sections, images).encode())
    return files


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def render_markdown(title: str, intro: Sequence[str], sections: Sequence[Section]) -> str:
    lines = [f"# {title}", "", *_paragraphs(intro)]
    for section in sections:
        lines += [f"## {section.title}", "", *_paragraphs(section.paragraphs)]
        for table in section.tables:
            lines += [f"*{table.caption}* ([{table.name}.csv]({table.name}.csv))", ""]
            if table.inline:
                lines += [_markdown_table(table.shown), ""]
            else:  # folded, as on the HTML page (GitHub and most viewers render <details>)
                lines += [f"<details><summary>{len(table.data):,} rows</summary>", "",
                          _markdown_table(table.shown), "", "</details>", ""]
        for figure in section.figures:
            lines += [f"![{figure.caption}]({figure.name}.png)", "", f"*{figure.caption}*", ""]
    return "\n".join(lines)


def render_html(title: str, intro: Sequence[str], sections: Sequence[Section],
                images: dict[str, bytes]) -> str:
    """One page with everything inlined but the CSV files it links to; `images` maps figure name
    -> PNG bytes. The page comes from the package's Jinja2 templates (`templates/`), which escape
    every value."""
    return _templates().get_template("report.html.j2").render(
        title=title, intro=intro,
        sections=[_html_section(section, images) for section in sections])


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("mlc.analysis", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True)


def _html_section(section: Section, images: dict[str, bytes]) -> dict[str, object]:
    """What the template needs of a section: text, tables as rows of strings, figures as base64."""
    tables = [{"caption": t.caption, "csv": f"{t.name}.csv", "folded": not t.inline,
               "n_rows": len(t.data), "columns": [str(c) for c in t.shown.columns],
               "rows": [[(cell, _cell_class(cell)) for cell in row]
                        for row in _as_text(t.shown).itertuples(index=False)]}
              for t in section.tables]
    figures = []
    for f in section.figures:
        width, height = (f.figure.get_size_inches() * _DPI).round().astype(int)
        figures.append({"caption": f.caption, "width": width, "height": height,
                        "data": base64.b64encode(images[f.name]).decode("ascii")})
    return {"title": section.title, "anchor": _anchor(section.title),
            "paragraphs": section.paragraphs, "tables": tables, "figures": figures}


def _cell_class(text: str) -> str:
    """How a cell is set: numbers ("87%", "100 ± 0%", "4.4e-06", "—") right-aligned on one line,
    words left-aligned, long phrases (a status) wrapped in a column of readable width."""
    if _NUMBER.fullmatch(text):
        return "num"
    return "long" if len(text) > 24 else "text"


def _anchor(title: str) -> str:
    """"2. Which task trained this network?" -> "which-task-trained-this-network"."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-0123456789") or "section"


def _paragraphs(texts: Sequence[str]) -> list[str]:
    return [line for text in texts for line in (text, "")]


def _markdown_table(frame: pd.DataFrame) -> str:
    text = _as_text(frame)
    header = "| " + " | ".join(_markdown_cell(str(c)) for c in text.columns) + " |"
    rule = "|" + "|".join("---" for _ in text.columns) + "|"
    rows = ["| " + " | ".join(map(_markdown_cell, row)) + " |"
            for row in text.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as the string a reader sees: missing values as "—" (whatever their dtype: NaN,
    None, pd.NA), floats to 4 significant digits."""
    return frame.apply(lambda column: column.map(_cell)).astype(object)


def _cell(value: object) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "—"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
