"""Top-k metrics and the baselines every run is compared with (numpy and scipy only).

- Recall@K: the share of a user's held-out items found in their top K, averaged over users.
- NDCG@K: the same with a discount for how far down the list they are (binary relevance).
- Coverage@K: the share of the catalog that appears in anybody's top K (a popularity-only system
  scores badly here even when its recall is fine).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def later_targets(logged: pd.DataFrame, interactions: pd.DataFrame, days: float, logged_at: str, time_column: str) -> pd.DataFrame:
    """The logged requests whose user interacted with something in the ``days`` after the request,
    with those items as ``targets`` (less what the request excluded: items already seen were never
    recommended)."""
    for column in ("user_id", "item_id", time_column):
        if column not in interactions.columns:
            raise ValueError(f"The later interactions must hold {column!r}; they have {sorted(interactions.columns)}.")
    if "user_id" not in logged.columns:
        raise ValueError("The request log holds no user_id: these are not recommendation requests.")
    requests = pd.DataFrame({
        "request": np.arange(len(logged)),
        "user_id": logged["user_id"].astype(str).to_numpy(),
        "start": pd.to_datetime(logged[logged_at]).to_numpy(),
    })
    later = interactions[["user_id", "item_id", time_column]].copy()
    later["user_id"] = later["user_id"].astype(str)
    later["item_id"] = later["item_id"].astype(str)
    later[time_column] = pd.to_datetime(later[time_column])
    if later[time_column].dt.tz is not None:
        later[time_column] = later[time_column].dt.tz_convert("UTC").dt.tz_localize(None)
    joined = requests.merge(later, on="user_id", how="inner")
    joined = joined[(joined[time_column] > joined["start"]) & (joined[time_column] <= joined["start"] + pd.Timedelta(days=days))]
    excluded = _seen_lists(logged) if "exclude" in logged.columns else None
    if excluded is not None and len(joined):
        seen = np.array([item in excluded[request] for request, item in zip(joined["request"], joined["item_id"])], dtype=bool)
        joined = joined[~seen]
    targets = joined.groupby("request", sort=True)["item_id"].agg(lambda items: list(dict.fromkeys(items)))
    kept = logged.iloc[targets.index.to_numpy()].reset_index(drop=True)
    kept["targets"] = targets.to_list()
    return kept


def _seen_lists(examples: pd.DataFrame) -> list[set[str]]:
    return [set(text.split()) for text in examples["exclude"].fillna("").astype(str)]


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


def _binary_matrix(interactions: pd.DataFrame, item_index: dict[str, int]) -> "Any":
    """Users × items, 1 where the user interacted with the item (repeats count once)."""
    from scipy.sparse import csr_matrix

    users = interactions["user_id"].astype(str)
    user_index = {user: index for index, user in enumerate(users.unique())}
    rows = users.map(user_index).to_numpy()
    columns = interactions["item_id"].astype(str).map(item_index).to_numpy()
    matrix = csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(len(user_index), len(item_index)))
    matrix.data[:] = 1.0  # duplicates were summed
    return matrix


def _top_k_lists(scores: np.ndarray, items: np.ndarray, k: int) -> list[list[str]]:
    """Per row of ``scores`` [users, items] the ``k`` best item ids, best first; -inf never listed."""
    take = min(k, scores.shape[1])
    best = np.argpartition(-scores, take - 1, axis=1)[:, :take]
    order = np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1, kind="stable")
    best = np.take_along_axis(best, order, axis=1)
    finite = np.isfinite(np.take_along_axis(scores, best, axis=1))
    return [[str(items[index]) for index, keep in zip(row, keeps) if keep] for row, keeps in zip(best, finite)]


def item_gram(interactions: pd.DataFrame, item_index: dict[str, int]) -> np.ndarray:
    """XᵀX of the binary user × item matrix (dense items × items): co-occurrence counts, each item's
    own count on the diagonal."""
    matrix = _binary_matrix(interactions, item_index)
    return (matrix.T @ matrix).toarray()


def ease_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """EASE's B from XᵀX and λ: P = (XᵀX + λI)⁻¹, B = I − P · diag(1/diag(P)), i.e. B_ij = −P_ij / P_jj
    off the diagonal and 0 on it (Steck 2019, eq. 8)."""
    regularized = gram.astype(np.float64)  # a copy: the caller's Gram matrix is reused for other λ
    regularized[np.diag_indices_from(regularized)] += l2
    inverse = np.linalg.inv(regularized)
    weights = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


class EaseBaseline:
    """EASE (Steck, 2019, "Embarrassingly Shallow Autoencoders"): an item × item ridge regression of each
    item's column of the binary user × item matrix on all other items, in closed form:
    P = (XᵀX + λI)⁻¹, B = I − P · diag(1/diag(P)) (so diag(B) = 0); a user's scores are their
    multi-hot history × B. Often the strongest simple top-N model on rating logs.

    ``l2`` (λ) scales with the data: the diagonal of XᵀX holds each item's interaction count, so the
    default λ is a multiple of the mean count (Steck's λ = 500 on MovieLens-20M is about one mean count).
    Given validation rows, ``fit`` picks the multiple from ``l2_multiples`` on their NDCG@10 first.
    Memory is items² floats: catalogs above ``max_items`` are refused (``ValueError``)."""

    def __init__(self, l2: float | None = None, l2_multiples: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0), max_items: int = 20_000):
        self.l2 = l2
        self.l2_multiples = tuple(l2_multiples)
        self.max_items = max_items

    def fit(self, interactions: pd.DataFrame, items: Sequence[str], valid: pd.DataFrame | None = None, before_valid: pd.DataFrame | None = None) -> "EaseBaseline":
        """Fit on ``interactions``. When ``l2`` is None and ``valid`` rows are given, λ is chosen on their
        NDCG@10 first, each λ fitted on ``before_valid`` (the interactions their histories come from;
        default ``interactions``)."""
        self.items = np.asarray(list(items), dtype=object)
        if len(self.items) > self.max_items:
            raise ValueError(f"EASE needs an items × items matrix: {len(self.items)} items is above max_items={self.max_items}.")
        self.item_index = {item: index for index, item in enumerate(self.items)}
        gram = self._gram(interactions)
        mean_count = float(np.mean(np.diag(gram))) or 1.0
        if self.l2 is not None:
            self.chosen_l2 = float(self.l2)
        elif valid is not None and len(valid):
            valid_gram = gram if before_valid is None else self._gram(before_valid)
            tried, fitted = {}, {}
            for multiple in self.l2_multiples:
                self.weights = fitted[multiple * mean_count] = ease_weights(valid_gram, multiple * mean_count)
                lists = self.recommend(valid, GATE_K_FOR_CHOICE)
                tried[multiple * mean_count] = top_k_metrics(lists, list(valid["targets"]), [GATE_K_FOR_CHOICE], len(self.items))[f"ndcg_at_{GATE_K_FOR_CHOICE}"]
            self.tried = tried
            self.chosen_l2 = max(tried, key=tried.get)
            if before_valid is None:  # chosen on the very matrix it is fitted on: no second inversion
                self.weights = fitted[self.chosen_l2]
                return self
        else:
            self.chosen_l2 = mean_count
        self.weights = ease_weights(gram, self.chosen_l2)
        return self

    def _gram(self, interactions: pd.DataFrame) -> np.ndarray:
        return item_gram(interactions, self.item_index)


    def scores(self, examples: pd.DataFrame) -> np.ndarray:
        """[users, items] scores from each row's ``exclude`` (everything seen), seen items at -inf."""
        history = np.zeros((len(examples), len(self.items)), dtype=np.float32)
        for position, seen in enumerate(_seen_lists(examples)):
            history[position, [self.item_index[item] for item in seen if item in self.item_index]] = 1.0
        scores = history @ self.weights
        scores[history > 0] = -np.inf
        return scores

    def recommend(self, examples: pd.DataFrame, k: int) -> list[list[str]]:
        lists: list[list[str]] = []
        for start in range(0, len(examples), 2048):  # bounded memory: 2,048 users × items at a time
            lists.extend(_top_k_lists(self.scores(examples.iloc[start : start + 2048]), self.items, k))
        return lists


GATE_K_FOR_CHOICE = 10


def served_lists(lists: Sequence[Sequence[str]], k: int) -> dict[str, np.ndarray]:
    """Recommendation lists as the served module answers: ``item_ids`` [users, k] padded with "" and
    ``scores`` [users, k] (rank-based: the baselines' own scales differ)."""
    item_ids = np.full((len(lists), k), "", dtype=object)
    for row, items in enumerate(lists):
        item_ids[row, : min(k, len(items))] = list(items)[:k]
    scores = np.where(item_ids != "", 1.0 / np.arange(1, k + 1, dtype=np.float32)[None, :], 0.0).astype(np.float32)
    return {"item_ids": item_ids, "scores": scores}


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
