"""Generate the example recommendation datasource: ``interactions.csv.gz``, ``items.csv`` and their schemas.

Synthetic e-commerce browsing: 8,000 shoppers, 3,000 products in 16 categories, about 190,000 events
(views, add-to-carts, purchases) with ISO 8601 timestamps over half a year. Products and shoppers live in
a small latent "style" space; every shopper prefers a few categories; each visit (session) picks one of
them and draws products by style match and by a Zipf popularity; some events are noise. See
``datasources/recommendation/README.md``.

Usage::

    python datasources/recommendation/make_recommendation.py           # rewrite the files (same bytes every run)
    python datasources/recommendation/make_recommendation.py --check   # rewrite, then print NDCG@10 of a few models

Generation needs numpy only (``generate`` is also used by ``bench/recommend_bench.py`` at larger sizes);
``--check`` also needs mlsvc's own recommendation package.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

SEED = 20150411
N_USERS = 8_000
N_ITEMS = 3_000
DIM = 12  # latent style dimensions
SESSIONS_MEAN = 3.6  # visits per shopper: 1 + Poisson(lognormal with this mean)
SESSION_LENGTH_P = 0.3  # products viewed per visit: 1 + Geometric(p) - 1, mean 1 / p
MAX_SESSION = 12
STYLE_WEIGHT = 2.2  # how much a product's style match moves its odds within a category
POPULARITY_WEIGHT = 0.8  # how much its Zipf popularity does
ZIPF = 1.0
NOISE_RATE = 0.10  # views of a product drawn by popularity alone, from any category
REVIEW_RATE = 0.10  # a second view of the same product in the same visit
START = datetime(2024, 1, 1, tzinfo=UTC)
HERE = Path(__file__).resolve().parent

# category: (share of the catalogue, median price in dollars, nouns for titles)
CATEGORIES: dict[str, tuple[float, float, tuple[str, ...]]] = {
    "kitchen": (0.09, 35.0, ("pan", "knife", "kettle", "blender", "mug", "cutting board")),
    "home_decor": (0.08, 45.0, ("lamp", "vase", "rug", "cushion", "mirror", "frame")),
    "outdoor": (0.06, 80.0, ("tent", "backpack", "lantern", "hammock", "cooler", "stove")),
    "fitness": (0.06, 40.0, ("yoga mat", "dumbbell", "kettlebell", "resistance band", "foam roller")),
    "electronics": (0.07, 120.0, ("headphones", "speaker", "charger", "keyboard", "mouse", "webcam")),
    "books": (0.09, 15.0, ("novel", "cookbook", "biography", "atlas", "thriller", "poetry collection")),
    "toys": (0.06, 25.0, ("puzzle", "building set", "plush", "board game", "kite", "train set")),
    "beauty": (0.06, 20.0, ("serum", "lipstick", "moisturizer", "perfume", "shampoo", "brush set")),
    "fashion": (0.08, 50.0, ("jacket", "sneakers", "scarf", "dress", "jeans", "sunglasses")),
    "garden": (0.05, 30.0, ("planter", "pruner", "seed kit", "watering can", "hose", "trellis")),
    "pets": (0.05, 22.0, ("dog bed", "cat tree", "leash", "aquarium", "chew toy", "feeder")),
    "office": (0.05, 28.0, ("notebook", "desk lamp", "pen set", "organizer", "monitor stand")),
    "music": (0.04, 90.0, ("guitar strings", "ukulele", "metronome", "capo", "keyboard stand")),
    "baby": (0.05, 30.0, ("stroller fan", "bottle set", "blanket", "teether", "carrier")),
    "grocery": (0.06, 8.0, ("coffee beans", "tea sampler", "olive oil", "granola", "hot sauce")),
    "games": (0.05, 45.0, ("controller", "strategy game", "racing game", "headset stand", "card game")),
}
# One pair of title words per latent dimension: the word for the side a product leans to most.
STYLES = (
    ("classic", "modern"), ("rustic", "sleek"), ("compact", "oversized"), ("bold", "subtle"),
    ("eco", "deluxe"), ("travel", "family"), ("vintage", "smart"), ("soft", "rugged"),
    ("minimal", "ornate"), ("sporty", "cozy"), ("bright", "dark"), ("handmade", "pro"),
)  # fmt: skip
EVENTS = ("view", "add_to_cart", "purchase")

INTERACTION_COLUMNS = (
    ("user_id", "CATEGORICAL"),
    ("item_id", "CATEGORICAL"),
    ("event_type", "CATEGORICAL"),
    ("timestamp", "CATEGORICAL"),
)
ITEM_COLUMNS = (("item_id", "CATEGORICAL"), ("category", "CATEGORICAL"), ("price", "NUMERIC"), ("title", "TEXT"))


@dataclass
class Catalogue:
    """Products: category, latent style vector, log popularity, price and title."""

    category: np.ndarray  # int index into CATEGORIES
    style: np.ndarray  # (n_items, DIM)
    log_popularity: np.ndarray
    price: np.ndarray
    title: list[str]


@dataclass
class Events:
    """One row per event, in time order."""

    user: np.ndarray
    item: np.ndarray
    event: np.ndarray  # index into EVENTS
    seconds: np.ndarray  # since START


def draw_catalogue(rng: np.random.Generator, n_items: int) -> Catalogue:
    """Categories by share, a Gaussian style per product, Zipf popularity by a random rank, prices, titles."""
    names = list(CATEGORIES)
    shares = np.array([CATEGORIES[c][0] for c in names])
    category = np.sort(rng.choice(len(names), n_items, p=shares / shares.sum()))
    style = rng.normal(0.0, 1.0, (n_items, DIM))
    rank = rng.permutation(n_items) + 1
    log_popularity = -ZIPF * np.log(rank)
    median = np.array([CATEGORIES[c][1] for c in names])[category]
    # Deluxe-leaning products (style dimension 4) cost more; the rest is noise.
    price = np.round(np.maximum(median * np.exp(0.25 * style[:, 4] + rng.normal(0.0, 0.35, n_items)), 1.0), 2)
    lean = np.argmax(np.abs(style), axis=1)
    nouns = [CATEGORIES[names[c]][2] for c in category]
    noun_pick = rng.integers(0, 1_000_000, n_items)
    title = [f"{STYLES[d][int(style[i, d] < 0)]} {nouns[i][noun_pick[i] % len(nouns[i])]}" for i, d in enumerate(lean)]
    return Catalogue(category, style, log_popularity, price, title)


def draw_sessions(rng: np.random.Generator, n_users: int, sessions_mean: float) -> tuple[np.ndarray, np.ndarray]:
    """Each shopper's visits: the owner of every session and its start in seconds, shoppers in order."""
    activity = np.exp(rng.normal(np.log(sessions_mean) - 0.5 * 0.8**2, 0.8, n_users))
    counts = 1 + rng.poisson(activity)
    owner = np.repeat(np.arange(n_users), counts)
    first_day = rng.uniform(0.0, 60.0, n_users)
    # Days since the shopper's first visit: exponential gaps, summed within each shopper; busier shoppers
    # come back sooner, so that everyone's visits spread over about the four months after their first.
    cum = np.cumsum(rng.exponential(1.0, len(owner)) * np.repeat(120.0 / counts, counts))
    offsets = np.cumsum(counts) - counts
    since_first = cum - np.repeat(cum[offsets], counts)
    span = since_first[offsets + counts - 1]
    since_first *= np.repeat(np.minimum(1.0, 150.0 / np.maximum(span, 1e-9)), counts)  # at most 150 days
    hour = rng.choice(24, len(owner), p=_hour_weights())
    day = np.floor(np.repeat(first_day, counts) + since_first)
    seconds = day * 86_400 + hour * 3_600 + rng.integers(0, 3_600, len(owner))
    return owner, seconds


def _hour_weights() -> np.ndarray:
    w = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.0, 2.0, 3.0, 3.5, 4.0, 4.5,
                  5.0, 5.0, 4.5, 4.5, 5.0, 5.5, 6.5, 7.5, 8.0, 7.0, 5.0, 2.5])  # fmt: skip
    return w / w.sum()


def draw_tastes(rng: np.random.Generator, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Per shopper: a preference over categories (concentrated on a few) and a style vector."""
    shares = np.array([v[0] for v in CATEGORIES.values()])
    preference = rng.dirichlet(0.25 * len(shares) * shares / shares.sum(), n_users)
    taste = rng.normal(0.0, 1.0, (n_users, DIM))
    return preference, taste


def draw_views(
    rng: np.random.Generator, cat: Catalogue, owner: np.ndarray, preference: np.ndarray, taste: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Products viewed in each session: one category per visit, products by style match and popularity
    (the Gumbel top-L trick draws L distinct products from the softmax); returns session, rank, item."""
    n_sessions = len(owner)
    cumulative = np.cumsum(preference[owner], axis=1)
    session_category = np.minimum((rng.random(n_sessions)[:, None] > cumulative).sum(axis=1), len(CATEGORIES) - 1)
    length = np.minimum(rng.geometric(SESSION_LENGTH_P, n_sessions), MAX_SESSION)
    # The visit's intent: the shopper's taste, shifted a little each time.
    intent = taste[owner] + 0.5 * rng.normal(0.0, 1.0, (n_sessions, DIM))
    sessions, ranks, items = [], [], []
    for c in range(len(CATEGORIES)):
        in_c = np.flatnonzero(session_category == c)
        products = np.flatnonzero(cat.category == c)
        if len(in_c) == 0:
            continue
        top = min(MAX_SESSION, len(products))
        for block in np.array_split(in_c, max(1, len(in_c) // 4096)):
            logits = (STYLE_WEIGHT / np.sqrt(DIM)) * (intent[block] @ cat.style[products].T)
            logits += POPULARITY_WEIGHT * cat.log_popularity[products]
            logits += rng.gumbel(size=logits.shape)
            best = np.argpartition(-logits, top - 1, axis=1)[:, :top]
            order = np.argsort(-np.take_along_axis(logits, best, axis=1), axis=1)
            best = np.take_along_axis(best, order, axis=1)
            keep = np.arange(top)[None, :] < np.minimum(length[block], top)[:, None]
            rows, rank = np.nonzero(keep)
            sessions.append(block[rows])
            ranks.append(rank)
            items.append(products[best[rows, rank]])
    session, rank, item = np.concatenate(sessions), np.concatenate(ranks), np.concatenate(items)
    # Noise: some views are of a product drawn by popularity alone, from anywhere in the catalogue.
    noise = rng.random(len(item)) < NOISE_RATE
    p = np.exp(cat.log_popularity - cat.log_popularity.max())
    item[noise] = rng.choice(len(p), int(noise.sum()), p=p / p.sum())
    return session, rank, item


def draw_events(
    rng: np.random.Generator,
    cat: Catalogue,
    owner: np.ndarray,
    start: np.ndarray,
    session: np.ndarray,
    rank: np.ndarray,
    item: np.ndarray,
    taste: np.ndarray,
) -> Events:
    """Views a minute or so apart; second views; add-to-carts and purchases, likelier for a good style match."""
    n = len(item)
    user = owner[session]
    order = np.lexsort((rank, session))
    session, rank, item, user = session[order], rank[order], item[order], user[order]
    # Seconds since the visit's start: gaps summed within each session.
    cum = np.cumsum(rng.exponential(80.0, n) + 10.0)
    starts = _starts(session)
    within = cum - np.repeat(cum[starts], np.diff(np.r_[starts, n]))
    seconds = start[session] + within
    match = np.einsum("ij,ij->i", taste[user], cat.style[item]) / np.sqrt(DIM)
    p_cart = 0.06 + 0.18 / (1.0 + np.exp(-2.0 * (match - 0.5)))
    cart = rng.random(n) < p_cart
    purchase = cart & (rng.random(n) < 0.45)
    review = rng.random(n) < REVIEW_RATE
    parts = [
        (user, item, np.zeros(n, np.int64), seconds),
        (
            user[review],
            item[review],
            np.zeros(int(review.sum()), np.int64),
            seconds[review] + rng.uniform(20.0, 400.0, int(review.sum())),
        ),
        (
            user[cart],
            item[cart],
            np.ones(int(cart.sum()), np.int64),
            seconds[cart] + rng.uniform(5.0, 240.0, int(cart.sum())),
        ),
        (
            user[purchase],
            item[purchase],
            np.full(int(purchase.sum()), 2, np.int64),
            seconds[purchase] + rng.uniform(250.0, 900.0, int(purchase.sum())),
        ),
    ]
    u, i, e, s = (np.concatenate([p[k] for p in parts]) for k in range(4))
    s = np.floor(s)
    order = np.lexsort((e, i, u, s))
    return Events(u[order], i[order], e[order], s[order])


def _starts(group: np.ndarray) -> np.ndarray:
    """Where each run of equal values in a sorted array starts."""
    return np.flatnonzero(np.r_[True, group[1:] != group[:-1]])


def generate(
    n_users: int = N_USERS, n_items: int = N_ITEMS, sessions_mean: float = SESSIONS_MEAN, seed: int = SEED
) -> tuple[Catalogue, Events]:
    """The catalogue and the event log, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    cat = draw_catalogue(rng, n_items)
    preference, taste = draw_tastes(rng, n_users)
    owner, start = draw_sessions(rng, n_users, sessions_mean)
    session, rank, item = draw_views(rng, cat, owner, preference, taste)
    return cat, draw_events(rng, cat, owner, start, session, rank, item, taste)


def user_ids(n: int) -> np.ndarray:
    return np.array([f"U{i:05d}" for i in range(1, n + 1)])


def item_ids(n: int) -> np.ndarray:
    return np.array([f"P{i:05d}" for i in range(1, n + 1)])


def iso_times(seconds: np.ndarray) -> list[str]:
    """Seconds since START as ISO 8601 UTC timestamps, e.g. 2024-03-05T14:22:10Z."""
    return [(START + timedelta(seconds=int(s))).strftime("%Y-%m-%dT%H:%M:%SZ") for s in seconds]


def interaction_rows(events: Events) -> list[list[str]]:
    users, items = user_ids(int(events.user.max()) + 1), item_ids(int(events.item.max()) + 1)
    return [
        list(r)
        for r in zip(
            users[events.user],
            items[events.item],
            np.array(EVENTS)[events.event],
            iso_times(events.seconds),
            strict=True,
        )
    ]


def item_rows(cat: Catalogue) -> list[list[str]]:
    names = np.array(list(CATEGORIES))
    return [
        list(r)
        for r in zip(
            item_ids(len(cat.title)), names[cat.category], [f"{p:.2f}" for p in cat.price], cat.title, strict=True
        )
    ]


def schema(columns: tuple[tuple[str, str], ...], row_id: str | None) -> dict[str, object]:
    return {
        "version": "1.0",
        "rowId": row_id,
        "targetAttributeName": None,
        "dataFormat": "CSV",
        "dataFileContainsHeader": True,
        "attributes": [{"attributeName": name, "attributeType": kind} for name, kind in columns],
        "excludedAttributeNames": [],
    }


def csv_text(columns: tuple[tuple[str, str], ...], rows: list[list[str]]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([name for name, _ in columns])
    writer.writerows(rows)
    return text.getvalue()


def gzip_bytes(text: str) -> bytes:
    """Gzip with no file name and a zero timestamp in the header, so equal text gives equal bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as f:
        f.write(text.encode("utf-8"))
    return buffer.getvalue()


def write(out_dir: Path) -> tuple[Path, Path]:
    """Generate and write both files and their schemas; return the two data paths."""
    cat, events = generate()
    interactions = out_dir / "interactions.csv.gz"
    interactions.write_bytes(gzip_bytes(csv_text(INTERACTION_COLUMNS, interaction_rows(events))))
    (out_dir / "interactions.csv.gz.schema").write_text(
        json.dumps(schema(INTERACTION_COLUMNS, None), indent=2) + "\n", encoding="utf-8"
    )
    items = out_dir / "items.csv"
    items.write_text(csv_text(ITEM_COLUMNS, item_rows(cat)), encoding="utf-8")
    (out_dir / "items.csv.schema").write_text(
        json.dumps(schema(ITEM_COLUMNS, "item_id"), indent=2) + "\n", encoding="utf-8"
    )
    return interactions, items


def check(interactions: Path, items: Path) -> None:
    """Read the files back as typed frames and print the counts and each candidate's validation NDCG@10."""
    import pandas as pd

    sys.path.insert(0, str(HERE.parents[1]))
    from mlsvc.recommendation.loop import train_recommender

    frame = pd.read_csv(interactions, dtype=str, keep_default_na=False)
    catalogue = pd.read_csv(items, dtype={"item_id": str, "category": str, "title": str}, keep_default_na=False)
    print(
        f"events {len(frame):,}, users {frame.user_id.nunique():,}, items {frame.item_id.nunique():,} "
        f"of {len(catalogue):,}; events: {frame.event_type.value_counts().to_dict()}"
    )
    outcome = train_recommender(frame, None, k=10, seed=0, budget_s=60.0, items_frame=catalogue)
    for row in outcome.leaderboard:
        if row.get("validation_score") is not None:
            print(
                f"  {row['candidate']:<16} NDCG@10 {row['validation_score']:.4f}  fit {row['fit_time_s']:.2f} s"
                f"{'  (selected)' if row['selected'] else ''}"
            )
    print(f"holdout: {outcome.evaluation['vs_baseline']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="after writing, train the candidates and print NDCG@10")
    parser.add_argument("--out-dir", type=Path, default=HERE, help="where to write (default: next to this script)")
    args = parser.parse_args()
    interactions, items = write(args.out_dir)
    for path in (interactions, items):
        print(f"wrote {path} ({path.stat().st_size:,} bytes) and {path.name}.schema")
    if args.check:
        check(interactions, items)


if __name__ == "__main__":
    main()
