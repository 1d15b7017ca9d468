"""The project's pages: server-rendered HTML (Jinja2 templates shipped in the package), one stylesheet
inline, no script and nothing fetched from elsewhere, so they read the same offline; each page
refreshes itself (a meta refresh). They render the very objects the JSON under /api/v1/ returns
(`coordinator.front_page` and the rest), so a page and its JSON never disagree.
"""

from __future__ import annotations

import math

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from mlc import coordinator
from mlc.errors import UnknownNameError

__all__ = ["REFRESH_S", "format_credit", "router"]

router = APIRouter(include_in_schema=False)
REFRESH_S = 30  # how often a page reloads itself


def format_credit(value: float) -> str:
    """Credit as the pages show it: thousands separated with two decimals, or three significant
    digits below one (a small unit earns a few thousandths), never in exponent notation."""
    if value == 0:
        return "0"
    if abs(value) < 1:
        decimals = 2 - math.floor(math.log10(abs(value)))
        return f"{value:.{decimals}f}"
    return f"{value:,.2f}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _loss_bars(loss: coordinator.ExperimentDetail) -> list[dict[str, float]]:
    """The loss histogram's bars in a 100 x 40 box (the SVG's viewBox), heights scaled to the tallest."""
    hist = loss.loss
    tallest = max(hist.counts, default=0)
    if not tallest:
        return []
    width = 100 / len(hist.counts)
    return [
        {"x": i * width, "w": width * 0.9, "h": 38 * n / tallest, "n": n, "lo": hist.edges[i],
         "hi": hist.edges[i + 1]}
        for i, n in enumerate(hist.counts)
    ]


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("mlc.server", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["credit"] = format_credit
    env.filters["percent"] = _percent
    env.filters["ceil"] = math.ceil
    env.globals["refresh_s"] = REFRESH_S
    return env


_ENV = _environment()


def _page(template: str, status_code: int = 200, **context: object) -> HTMLResponse:
    return HTMLResponse(_ENV.get_template(template).render(**context), status_code=status_code)


def _missing(exc: UnknownNameError) -> HTMLResponse:
    return _page("missing.html", 404, title="Not found", message=str(exc))


@router.get("/", response_class=HTMLResponse)
def front(request: Request) -> HTMLResponse:
    return _page("index.html", title="MLC", page=coordinator.front_page(request.app.state.engine))


@router.get("/experiments/{name}", response_class=HTMLResponse)
def experiment(name: str, request: Request) -> HTMLResponse:
    try:
        detail = coordinator.experiment_detail(request.app.state.engine, name)
    except UnknownNameError as exc:
        return _missing(exc)
    return _page("experiment.html", title=name, e=detail, bars=_loss_bars(detail))


@router.get("/hosts/{host_id}", response_class=HTMLResponse)
def host(host_id: int, request: Request) -> HTMLResponse:
    try:
        detail = coordinator.host_detail(request.app.state.engine, host_id)
    except UnknownNameError as exc:
        return _missing(exc)
    return _page("host.html", title=f"Host {detail.name}", h=detail)


@router.get("/volunteers/{account_id}", response_class=HTMLResponse)
def volunteer(account_id: int, request: Request) -> HTMLResponse:
    try:
        detail = coordinator.volunteer_detail(request.app.state.engine, account_id)
    except UnknownNameError as exc:
        return _missing(exc)
    return _page("volunteer.html", title=f"Volunteer {detail.name}", v=detail)
