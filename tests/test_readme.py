"""The README's Python examples run as written, in a fresh folder, and say what they claim."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"


@pytest.mark.slow
def test_the_python_examples_train_read_and_recompute_a_loss(tmp_path, monkeypatch):
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text[text.index("From Python, training") :], re.S)[:2]
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile("\n".join(blocks), str(README), "exec"), scope)  # this repository's own README
    summary, ds, net = scope["summary"], scope["ds"], scope["net"]
    assert summary.status.n_finished == 20 and (tmp_path / summary.dataset_dir / "dataset.json").exists()
    loss = scope["torch"].nn.functional.binary_cross_entropy_with_logits(scope["logits"], scope["targets"])
    assert float(loss) == pytest.approx(net.final_val_loss, abs=1e-5)
    assert ds.layout.tensors(ds.weights())["fc4.weight"].shape == (20, 8, 12)
