"""The embedded default: an interaction log with the structure real catalogs have, seeded.

- Long-tail popularity: item appeal is log-normal, so a few items take a large share of interactions.
- Taste clusters: users belong to taste groups; items live near category centres in the same taste
  space, and a user's choices follow the dot product of the two (plus popularity).
- Sessions: a user interacts in bursts; within a session each next item drifts towards the previous
  one (people browse neighbours), which is what makes recent history predictive.
- New items arrive over time: a share of the catalog is created during the log and can only be chosen
  after it exists; titles carry category words, so text can place a new item before anyone clicks it.
- Explicit ratings (1-5) follow affinity, for apps that want them; implicit use ignores them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

START = pd.Timestamp("2026-01-01")
DAYS = 180
REGIONS = ["north", "south", "east", "west", "central"]
AGE_GROUPS = ["18-24", "25-34", "35-44", "45-54", "55+"]
CATEGORY_WORDS = {
    "sci-fi": ["galactic", "star", "orbit", "android", "nebula", "quantum", "colony", "signal"],
    "drama": ["letters", "winter", "family", "promise", "silence", "harbor", "return", "daughter"],
    "comedy": ["wedding", "roommates", "disaster", "holiday", "chaos", "neighbors", "road", "party"],
    "thriller": ["shadow", "witness", "protocol", "hunt", "agent", "conspiracy", "night", "target"],
    "documentary": ["planet", "ocean", "history", "inside", "wild", "science", "empire", "journey"],
    "animation": ["dragon", "little", "magic", "forest", "toy", "robot", "kingdom", "friends"],
    "romance": ["love", "paris", "summer", "heart", "letters", "dance", "forever", "kiss"],
    "horror": ["haunted", "blood", "cabin", "curse", "dark", "whisper", "ritual", "mirror"],
    "music": ["live", "tour", "sessions", "anthem", "rhythm", "vinyl", "encore", "stage"],
    "sports": ["champions", "final", "season", "legend", "underdog", "victory", "league", "race"],
    "cooking": ["kitchen", "recipes", "spice", "bakery", "feast", "street", "flavors", "chef"],
    "kids": ["adventure", "puppy", "school", "pirate", "castle", "monster", "rainbow", "treasure"],
}
COMMON_WORDS = ["the", "of", "a", "new", "last", "great", "secret", "lost", "city", "world", "days", "story"]


def generate_interactions(
    interactions: int = 100_000,
    users: int = 3_000,
    items: int = 2_000,
    *,
    seed: int = 0,
    taste_dim: int = 8,
    new_item_share: float = 0.3,
) -> dict[str, pd.DataFrame]:
    """Return ``{"rec_interactions", "rec_users", "rec_items"}`` tables (see data_contracts/)."""
    if interactions < 1 or users < 1 or items < 2:
        raise ValueError(f"Need at least 1 interaction, 1 user and 2 items; got {interactions}, {users}, {items}.")
    rng = np.random.default_rng(seed)
    categories = list(CATEGORY_WORDS)
    category_centres = rng.normal(size=(len(categories), taste_dim))
    category_weights = rng.dirichlet(np.full(len(categories), 2.0))

    # ---- items ----
    item_category = rng.choice(len(categories), size=items, p=category_weights)
    item_taste = category_centres[item_category] + 0.6 * rng.normal(size=(items, taste_dim))
    item_appeal = rng.normal(0.0, 1.2, size=items)  # log-normal popularity: the long tail
    is_new = rng.random(items) < new_item_share
    item_created = np.where(
        is_new, rng.uniform(0.05, 0.95, size=items) * DAYS, -rng.uniform(1, 365, size=items)
    )
    titles = []
    for index in range(items):
        words = CATEGORY_WORDS[categories[item_category[index]]]
        own = list(rng.choice(words, size=rng.integers(1, 3), replace=False))
        if rng.random() < 0.6:
            own.insert(int(rng.integers(0, len(own) + 1)), str(rng.choice(COMMON_WORDS)))
        titles.append(" ".join(own).title())
    item_frame = pd.DataFrame(
        {
            "item_id": [f"i{index:06d}" for index in range(items)],
            "title": titles,
            "category": [categories[c] for c in item_category],
            "created_at": START + pd.to_timedelta(np.round(item_created * 86_400), unit="s"),
        }
    )

    # ---- users ----
    clusters = max(4, min(24, users // 50))
    cluster_centres = rng.normal(size=(clusters, taste_dim))
    user_cluster = rng.integers(0, clusters, size=users)
    user_taste = cluster_centres[user_cluster] + 0.5 * rng.normal(size=(users, taste_dim))
    # Region and age group lean on the taste cluster: user features carry signal for cold start.
    cluster_region = rng.integers(0, len(REGIONS), size=clusters)
    cluster_age = rng.integers(0, len(AGE_GROUPS), size=clusters)
    region = np.where(rng.random(users) < 0.7, cluster_region[user_cluster], rng.integers(0, len(REGIONS), size=users))
    age = np.where(rng.random(users) < 0.7, cluster_age[user_cluster], rng.integers(0, len(AGE_GROUPS), size=users))
    user_frame = pd.DataFrame(
        {
            "user_id": [f"u{index:06d}" for index in range(users)],
            "region": [REGIONS[r] for r in region],
            "age_group": [AGE_GROUPS[a] for a in age],
        }
    )

    # ---- interactions: sessions of related items ----
    activity = rng.lognormal(0.0, 1.0, size=users)
    per_user = np.maximum(1, np.round(activity / activity.sum() * interactions)).astype(int)
    signup = rng.uniform(0, 0.8, size=users) * DAYS
    unit_taste = item_taste / np.linalg.norm(item_taste, axis=1, keepdims=True)
    rows_user, rows_item, rows_time, rows_rating = [], [], [], []
    budget = interactions
    for user in rng.permutation(users):
        count = min(int(per_user[user]), budget)
        if count <= 0:
            continue
        budget -= count
        affinity = item_taste @ user_taste[user] / np.sqrt(taste_dim)
        base_logits = 1.5 * affinity + item_appeal
        blocked = np.zeros(items)  # -inf for items already seen (people rarely re-pick the same item)
        made = 0
        while made < count:
            when = rng.uniform(signup[user], DAYS)
            session_length = min(count - made, int(rng.geometric(0.25)))
            allowed = np.where(item_created <= when, blocked, -np.inf)
            previous = None
            for step in range(session_length):
                logits = base_logits + allowed
                if previous is not None:
                    logits += 3.0 * (unit_taste @ unit_taste[previous])
                top = logits.max()
                if not np.isfinite(top):
                    break
                cumulative = np.cumsum(np.exp(logits - top))
                choice = min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")), items - 1)
                allowed[choice] = blocked[choice] = -np.inf
                previous = choice
                rating = np.clip(np.round(3.2 + 1.2 * affinity[choice] + rng.normal(0, 0.8)), 1, 5)
                rows_user.append(user)
                rows_item.append(choice)
                rows_time.append(when + step * rng.uniform(60, 900) / 86_400)
                rows_rating.append(rating)
                made += 1
            else:
                continue
            break  # nothing left this user has not seen
        if budget <= 0:
            break
    interaction_frame = pd.DataFrame(
        {
            "user_id": [f"u{u:06d}" for u in rows_user],
            "item_id": [f"i{i:06d}" for i in rows_item],
            "timestamp": START + pd.to_timedelta(np.round(np.asarray(rows_time) * 86_400), unit="s"),
            "rating": np.asarray(rows_rating, dtype=np.float64),
        }
    )
    interaction_frame = interaction_frame.sort_values(["timestamp", "user_id"], kind="stable").reset_index(drop=True)
    return {"rec_interactions": interaction_frame, "rec_users": user_frame, "rec_items": item_frame}
