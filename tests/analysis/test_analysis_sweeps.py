"""Sweep analysis: settings and accuracy predicted from weights, on data with a planted signal."""

import numpy as np
import pandas as pd

from mlc.analysis import RAW_WEIGHTS, WEIGHT_STATISTICS, MergedData, SweepPrediction
from mlc.analysis._data import HISTORY_COLUMNS


def _sweep_data(n: int = 120) -> tuple[MergedData, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    lr = rng.choice([1e-3, 1e-2], n)
    activation = rng.choice(["relu", "tanh"], n)
    weights = rng.standard_normal((n, 30)).astype(np.float32)
    weights[:, 0] += 5 * (lr == 1e-2)  # the learning rate leaves a mark; the activation none
    accuracy = 0.5 + 0.1 * weights[:, 1] + 0.01 * rng.standard_normal(n)
    networks = pd.DataFrame({"task": "DigitsClean", "lr": lr, "activation": activation,
                             "weight_decay": np.nan, "final_val_accuracy": accuracy, "layout_id": "fake/1"})
    data = MergedData(networks, {"fake/1": weights}, {"fake/1": None}, summary=pd.DataFrame(),
                      max_per_class=1000, converged_only=False,
                      history=pd.DataFrame(columns=list(HISTORY_COLUMNS)))
    return data, {RAW_WEIGHTS: weights, WEIGHT_STATISTICS: weights[:, :5]}


def test_a_marked_setting_and_the_accuracy_are_predicted_and_an_unmarked_one_is_not():
    data, features = _sweep_data()
    part = SweepPrediction(n_folds=4).run(data, features)
    assert part.varying_ == ["lr", "activation"]  # weight_decay is all missing: one value, not swept
    best = part.results_.sort_values("n_train").groupby(["target", "features"]).tail(1).set_index(
        ["target", "features"])["score"]
    assert best["lr", RAW_WEIGHTS] > 0.85 and best["final_val_accuracy", RAW_WEIGHTS] > 0.9
    assert best["activation", RAW_WEIGHTS] < 0.75
    sizes = part.results_.query("target == 'lr' and features == @RAW_WEIGHTS")["n_train"]
    assert sizes.is_monotonic_increasing and len(sizes) > 1  # a learning curve over networks
    assert [t.name for t in part.section_.tables] == ["sweep_prediction", "sweep_learning_curves"]


def test_without_a_sweep_there_is_nothing_to_predict():
    data, features = _sweep_data()
    data.networks["lr"] = 1e-3
    data.networks["activation"] = "relu"
    part = SweepPrediction().run(data, features)
    assert part.varying_ == [] and part.results_.empty and "nothing to predict" in part.section_.paragraphs[0]


def test_a_width_sweep_is_predicted_from_shared_statistics_and_raw_weights_per_layout():
    """Two layouts (widths 4 and 8, of 20 and 40 values): the statistics every layout shares cover
    all networks; raw weights answer within each layout, for the setting that varies there."""
    rng = np.random.default_rng(1)
    frames, blocks, stats = [], {}, []
    for width, layout_id in ((4, "fake/narrow"), (8, "fake/wide")):
        n = 60
        lr = rng.choice([1e-3, 1e-2], n)
        block = rng.standard_normal((n, 5 * width)).astype(np.float32)
        block[:, 0] += 5 * (lr == 1e-2)
        blocks[layout_id] = block
        stats.append(np.stack([np.abs(block).mean(1), block.std(1) * width, block[:, 0]], axis=1))
        frames.append(pd.DataFrame({"task": "DigitsClean", "lr": lr, "width": width, "layout_id": layout_id,
                                    "final_val_accuracy": 0.5 + 0.1 * block[:, 1]}))
    data = MergedData(pd.concat(frames, ignore_index=True), blocks, dict.fromkeys(blocks),
                      summary=pd.DataFrame(), max_per_class=1000, converged_only=False,
                      history=pd.DataFrame(columns=list(HISTORY_COLUMNS)))
    part = SweepPrediction(n_folds=4).run(data, {WEIGHT_STATISTICS: np.concatenate(stats)})
    assert part.varying_ == ["lr", "width"]
    best = part.results_.sort_values("n_train").groupby(["target", "features"]).tail(1).set_index(
        ["target", "features"])
    assert best.loc[("width", WEIGHT_STATISTICS), "score"] > 0.95
    for layout_id in blocks:  # width does not vary within a layout: only lr and the accuracy there
        mine = best.xs(f"{RAW_WEIGHTS} ({layout_id})", level="features")
        assert sorted(mine.index) == ["final_val_accuracy", "lr"] and mine.loc["lr", "n_networks"] == 60
        assert mine.loc["lr", "score"] > 0.85
    assert "2 weight layouts" in " ".join(part.section_.paragraphs)
