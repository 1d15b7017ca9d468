"""The HTML report in a real browser (headless Debian chromium through Playwright): it loads without a
console error and fits a desktop (1280 px) and a phone (390 px) window without scrolling sideways,
its folded tables opened; wide tables scroll inside their own box instead.

Screenshots of both widths are left in the test's temporary folder (`--basetemp` to keep them).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from analysis_fakes import FakeDataset

from mlc.analysis import (
    Baselines,
    DataOverview,
    DeviceComparison,
    Headline,
    LearningCurve,
    Projections,
    TaskIdentification,
    TrainingCurves,
    TrojanDetection,
    feature_matrices,
    merge_datasets,
)
from mlc.analysis._render import write_report

CHROMIUM = Path("/usr/bin/chromium")
FAST = ("SVM", "NaiveBayes")
WIDTHS = (1280, 390)

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"no {CHROMIUM} (apt-get install chromium) to render the page")


@pytest.fixture(scope="module")
def page_path(ds1: FakeDataset, ds2: FakeDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every part of the report on the shared synthetic networks, UMAP left out (its compilation
    alone takes longer than the rest; its figure is an image like the PCA one)."""
    data = merge_datasets([ds1, ds2])
    features = feature_matrices(data)
    trojan = TrojanDetection(FAST, n_folds=3).run(data, features)
    identify = TaskIdentification(FAST, n_folds=3).run(data, features)
    parts = [Headline().run(identify), DataOverview().run(data), TrainingCurves().run(data), trojan,
             identify, LearningCurve(n_repeats=2).run(data, features),
             DeviceComparison(FAST, n_folds=3).run(data, features),
             Projections(min_points_umap=10**6).run(data, features),
             Baselines().run([trojan.results_, identify.results_])]
    out = tmp_path_factory.mktemp("browser")
    files = write_report("MLC weight-space analysis: ds1 + ds2", ["Synthetic networks."],
                         [part.section_ for part in parts], out)
    return files["report.html"]


@pytest.mark.parametrize("width", WIDTHS)
def test_the_report_fits_the_window_without_errors(page_path: Path, width: int) -> None:
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.as_uri())
            page.eval_on_selector_all("details", "all => all.forEach(d => d.open = true)")
            fit = page.evaluate("""() => ({
                scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
                widest: Math.max(...[...document.querySelectorAll('main > *, section > *')]
                                 .map(e => e.getBoundingClientRect().right)),
                boxes: [...document.querySelectorAll('.table-box')].length,
                scrolling: [...document.querySelectorAll('.table-box')]
                           .filter(b => b.scrollWidth > b.clientWidth).length,
                contents: [...document.querySelectorAll('nav a')].length})""")
            page.screenshot(path=str(page_path.parent / f"report-{width}.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert fit["scroll"] <= fit["inner"], fit
    assert fit["widest"] <= fit["inner"], fit  # nothing sticks out, scrolled or not
    assert fit["boxes"] == 16 and fit["contents"] == 9
    if width == 390:
        assert fit["scrolling"] > 0  # the wide tables scroll inside their boxes
