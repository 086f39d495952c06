"""Top-k metrics and the baselines every run is compared with (numpy and scipy only).

- Recall@K: the share of a user's held-out items found in their top K, averaged over users.
- NDCG@K: the same with a discount for how far down the list they are (binary relevance).
- Coverage@K: the share of the catalog that appears in anybody's top K (a popularity-only system
  scores badly here even when its recall is fine).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def top_k_metrics(recommended: Sequence[Sequence[str]], targets: Sequence[Sequence[str]], ks: Sequence[int], catalog_size: int) -> dict[str, float]:
    """``recommended``: per user, item ids best first; ``targets``: per user, the held-out ids."""
    if len(recommended) != len(targets):
        raise ValueError(f"{len(recommended)} recommendation lists for {len(targets)} users.")
    if not len(targets):
        raise ValueError("No users to evaluate.")
    metrics: dict[str, float] = {}
    for k in sorted(set(ks)):
        discounts = 1.0 / np.log2(np.arange(2, k + 2))
        recalls, ndcgs, shown = [], [], set()
        for items, wanted in zip(recommended, targets):
            wanted = set(wanted)
            top = [item for item in list(items)[:k] if item != ""]
            shown.update(top)
            hits = np.array([item in wanted for item in top], dtype=np.float64)
            recalls.append(hits.sum() / len(wanted) if wanted else 0.0)
            ideal = discounts[: min(len(wanted), k)].sum()
            ndcgs.append(float((hits * discounts[: len(hits)]).sum() / ideal) if ideal else 0.0)
        metrics[f"recall_at_{k}"] = float(np.mean(recalls))
        metrics[f"ndcg_at_{k}"] = float(np.mean(ndcgs))
        metrics[f"coverage_at_{k}"] = len(shown) / max(catalog_size, 1)
    metrics["users"] = float(len(targets))
    return metrics


def _decoded(rows: np.ndarray) -> list[list[str]]:
    return [[value.decode() if isinstance(value, bytes) else str(value) for value in row] for row in rows]


def outputs_metrics(outputs: dict[str, np.ndarray], examples: pd.DataFrame, ks: Sequence[int], catalog_size: int) -> dict[str, float]:
    return top_k_metrics(_decoded(np.asarray(outputs["item_ids"])), list(examples["targets"]), ks, catalog_size)


def _seen_lists(examples: pd.DataFrame) -> list[set[str]]:
    return [set(text.split()) for text in examples["exclude"]]


class PopularityBaseline:
    """The most interacted-with training items, minus what each user has seen."""

    def fit(self, interactions: pd.DataFrame) -> "PopularityBaseline":
        self.ranking = interactions["item_id"].value_counts().index.astype(str).tolist()
        return self

    def recommend(self, examples: pd.DataFrame, k: int) -> list[list[str]]:
        lists = []
        for seen in _seen_lists(examples):
            lists.append([item for item in self.ranking[: k + len(seen)] if item not in seen][:k])
        return lists


class MatrixFactorizationBaseline:
    """PureSVD (Cremonesi et al., 2010): a truncated SVD of the binary user-item matrix; a user's
    scores are their row projected on the item factors. A strong, simple top-N baseline; like every
    pure collaborative model it knows nothing of items without interactions."""

    def __init__(self, factors: int = 64):
        self.factors = factors

    def fit(self, interactions: pd.DataFrame, items: Sequence[str]) -> "MatrixFactorizationBaseline":
        from scipy.sparse import csr_matrix
        from scipy.sparse.linalg import svds

        self.items = np.asarray(list(items), dtype=object)
        self.item_index = {item: index for index, item in enumerate(self.items)}
        users = interactions["user_id"].astype(str).unique()
        self.user_index = {user: index for index, user in enumerate(users)}
        rows = interactions["user_id"].astype(str).map(self.user_index).to_numpy()
        columns = interactions["item_id"].astype(str).map(self.item_index).to_numpy()
        matrix = csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(len(users), len(self.items)))
        factors = max(1, min(self.factors, min(matrix.shape) - 1))
        _, _, item_factors = svds(matrix, k=factors, random_state=0)
        self.item_factors = item_factors.T  # [items, factors]
        self.matrix = matrix
        return self

    def recommend(self, examples: pd.DataFrame, k: int) -> list[list[str]]:
        lists = []
        for history, seen in zip(examples["exclude"], _seen_lists(examples)):
            row = np.zeros(len(self.items))
            indices = [self.item_index[item] for item in history.split() if item in self.item_index]
            row[indices] = 1.0
            scores = (row @ self.item_factors) @ self.item_factors.T
            scores[[self.item_index[item] for item in seen if item in self.item_index]] = -np.inf
            take = min(k, len(scores))
            best = np.argpartition(-scores, take - 1)[:take]
            best = best[np.argsort(-scores[best], kind="stable")]
            lists.append([str(self.items[index]) for index in best if np.isfinite(scores[index])])
        return lists


def plot_recall_curves(curves: dict[str, dict[str, float]], ks: Sequence[int], path: Path) -> Path:
    """Recall@K and NDCG@K of the model and each baseline, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    names = list(curves)
    positions = np.arange(len(ks))
    width = 0.8 / max(len(names), 1)
    for offset, name in enumerate(names):
        for axis, metric in zip(axes, ("recall", "ndcg")):
            values = [curves[name].get(f"{metric}_at_{k}", np.nan) for k in ks]
            axis.bar(positions + offset * width, values, width, label=name)
    for axis, metric in zip(axes, ("Recall@K", "NDCG@K")):
        axis.set_xticks(positions + width * (len(names) - 1) / 2, [f"K={k}" for k in ks])
        axis.set_title(metric)
        axis.grid(axis="y", alpha=0.3)
    axes[0].legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_popularity(recommended: Sequence[Sequence[str]], popularity: pd.Series, path: Path, k: int = 10) -> Path:
    """The catalog's long tail (training interactions per item, by rank) and where the model's top-K
    recommendations fall on it: a recommender that only follows the head shows up at once."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranked = popularity.sort_values(ascending=False)
    rank_of = {item: rank for rank, item in enumerate(ranked.index)}
    shown = [rank_of.get(item, len(ranked)) for items in recommended for item in list(items)[:k] if item]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(np.arange(1, len(ranked) + 1), ranked.to_numpy() + 1)
    axes[0].set(xscale="log", yscale="log", xlabel="item popularity rank", ylabel="training interactions + 1", title="Long tail")
    axes[1].hist(shown, bins=50)
    axes[1].set(xlabel="popularity rank of recommended items", ylabel=f"top-{k} slots", title="Where recommendations fall")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
