"""Report part 5: weight-space pictures — 2-D projections of the raw weights, coloured by task.

Weights are standardised per parameter (as the classifiers see them). PCA shows the linear view; UMAP
(as MLDS showed its datasets) runs on the first 50 principal components, which keeps it fast on
thousands of 4,364-dimensional points without changing the neighbourhoods it draws. UMAP is imported
only here, because importing it (numba) takes seconds; with too few points it is skipped and the
report says so.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Self

import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from mlc.analysis._data import MergedData
from mlc.analysis._features import RAW_WEIGHTS, check_features
from mlc.analysis._plots import projection_figure
from mlc.analysis._sampling import sample_per_class
from mlc.analysis._section import ReportFigure, ReportTable, Section, Step, quiet

__all__ = ["Projections"]

_ID_COLUMNS = ["dataset", "net_id", "task", "device_kind"]


class Projections:
    """Fitted: `coords_` (per plotted network: identity, pca_1/2, umap_1/2), `explained_variance_`
    (the first two components' shares), `n_components_used_` (principal components UMAP ran on),
    `umap_note_` (why UMAP was skipped, or None), `section_`."""

    def __init__(self, max_points_per_task: int = 500, *, n_neighbors: int = 15,
                 n_components_for_umap: int = 50, min_points_umap: int = 10,
                 random_state: int = 0) -> None:
        self.max_points_per_task = max_points_per_task
        self.n_neighbors = n_neighbors
        self.n_components_for_umap = n_components_for_umap
        self.min_points_umap = min_points_umap
        self.random_state = random_state

    def run(self, data: MergedData, features: Mapping[str, np.ndarray], *,
            step: Step = quiet) -> Self:
        check_features(data, features, (RAW_WEIGHTS,))
        tasks = data.networks["task"].to_numpy()
        rng = np.random.default_rng(self.random_state)
        chosen = sample_per_class(tasks, self.max_points_per_task, rng, balanced=False)
        coords = data.networks.iloc[chosen][_ID_COLUMNS].reset_index(drop=True)
        n = len(chosen)
        self.explained_variance_ = (np.nan, np.nan)
        self.umap_note_: str | None = None
        self.n_components_used_ = 0
        pcs = np.full((n, 2), np.nan)
        embedding = np.full((n, 2), np.nan)
        if n < 3:
            self.umap_note_ = f"too few networks to project (n={n})"
        else:
            step("projections: PCA")
            scaled = StandardScaler().fit_transform(features[RAW_WEIGHTS][chosen])
            k = min(self.n_components_for_umap, n, scaled.shape[1])
            self.n_components_used_ = k
            pca = PCA(n_components=k, random_state=self.random_state).fit(scaled)
            components = pca.transform(scaled)
            pcs = components[:, :2]
            self.explained_variance_ = tuple(float(v) for v in pca.explained_variance_ratio_[:2])
            if n < self.min_points_umap:
                self.umap_note_ = (f"UMAP needs at least {self.min_points_umap} networks, the "
                                   f"data has {n}; only PCA is shown")
            else:
                step("projections: UMAP")
                embedding = self._umap(components)
        self.coords_ = coords.assign(pca_1=pcs[:, 0], pca_2=pcs[:, 1],
                                     umap_1=embedding[:, 0], umap_2=embedding[:, 1])
        self.section_ = self._section()
        return self

    def _umap(self, components: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            # umap's package init warns that TensorFlow (for ParametricUMAP, unused here) is absent.
            warnings.filterwarnings("ignore", message="Tensorflow not installed",
                                    category=ImportWarning)
            import umap
        # init="pca": the default spectral init fails (and warns) on the disconnected
        # neighbour graphs that well-separated tasks produce; n_jobs=1 because a fixed
        # random_state forces it anyway, with a warning otherwise.
        reducer = umap.UMAP(n_neighbors=min(self.n_neighbors, len(components) - 1), init="pca",
                            n_jobs=1, random_state=self.random_state)
        return np.asarray(reducer.fit_transform(components))

    def _section(self) -> Section:
        tasks = self.coords_["task"].to_numpy()
        shares = self.explained_variance_
        paragraphs = [f"{len(self.coords_):,} networks (at most {self.max_points_per_task:,} per "
                      "task, drawn at random), coloured by task; a DS1 machine and its DS2 twin "
                      "share a hue (dark: clean, light: trojaned)."]
        figures = []
        if np.isnan(shares[0]):
            paragraphs.append(f"No figures: {self.umap_note_}.")
        else:
            title = "PCA of the standardised raw weights"
            figures.append(ReportFigure("projection_pca", projection_figure(
                self.coords_[["pca_1", "pca_2"]].to_numpy(), tasks, title,
                (f"PC 1 ({100 * shares[0]:.1f}% of variance)",
                 f"PC 2 ({100 * shares[1]:.1f}% of variance)")), f"{title}, coloured by task."))
        if self.umap_note_ is None:
            title = (f"UMAP of the first {self.n_components_used_} principal components of the "
                     "standardised raw weights")
            figures.append(ReportFigure("projection_umap", projection_figure(
                self.coords_[["umap_1", "umap_2"]].to_numpy(), tasks, title,
                ("UMAP 1", "UMAP 2")), f"{title}, coloured by task."))
        elif not np.isnan(shares[0]):
            paragraphs.append(f"No UMAP figure: {self.umap_note_}.")
        return Section(
            "5. Weight-space pictures", tuple(paragraphs),
            tables=(ReportTable("projections", self.coords_,
                                "2-D coordinates of each plotted network.", inline=False),),
            figures=tuple(figures))
