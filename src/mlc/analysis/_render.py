"""Writing a report to disk: each table as CSV, each figure as PNG, and the same content as
`report.md` (next to its files) and as one self-contained `report.html` (images inlined as data URIs,
no external assets, so it can be mailed or archived as a single file)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mlc.analysis._section import Section

__all__ = ["HTML_FILE", "MARKDOWN_FILE", "render_html", "render_markdown", "write_report"]

MARKDOWN_FILE = "report.md"
HTML_FILE = "report.html"
_DPI = 110
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 1rem 0 2rem; }
figure img { max-width: 100%; }
figcaption, .caption { color: #555; font-size: 0.85rem; }
"""


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
        for figure in section.figures:
            lines += [f"![{figure.caption}]({figure.name}.png)", "", f"*{figure.caption}*", ""]
    return "\n".join(lines)


def render_html(title: str, intro: Sequence[str], sections: Sequence[Section],
                images: dict[str, bytes]) -> str:
    """One page with everything inlined; `images` maps figure name -> PNG bytes."""
    body = [f"<h1>{html.escape(title)}</h1>", *(_p(text) for text in intro)]
    for section in sections:
        body += [f"<h2>{html.escape(section.title)}</h2>", *(_p(t) for t in section.paragraphs)]
        for table in section.tables:
            body.append(f'<p class="caption">{html.escape(table.caption)} '
                        f"({html.escape(table.name)}.csv)</p>")
            if table.inline:
                body.append(_as_text(table.shown).to_html(index=False, border=0))
        for figure in section.figures:
            data = base64.b64encode(images[figure.name]).decode("ascii")
            caption = html.escape(figure.caption)
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
                        f"<figcaption>{caption}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _paragraphs(texts: Sequence[str]) -> list[str]:
    return [line for text in texts for line in (text, "")]


def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


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
