"""Generate the example fraud datasource: ``fraud.csv.gz`` and its Amazon ML schema ``fraud.csv.gz.schema``.

Synthetic card transactions, 50,000 rows, about 1.2 % fraud. Transactions are drawn first (merchant
category, card present or not, time, amount against the cardholder's usual spend, distance, mismatch
flags, velocity, account age), then whether each one is fraud is drawn from a logistic model of
documented drivers plus unobserved noise. See ``datasources/README.md``.

Usage::

    python datasources/make_fraud.py           # rewrite fraud.csv.gz and its schema (same bytes every run)
    python datasources/make_fraud.py --check   # rewrite, then fit models on a holdout and print the AUCs

Generation needs numpy only; ``--check`` also needs pandas and scikit-learn.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
from pathlib import Path

import numpy as np

SEED = 20150410
N_ROWS = 50_000
TARGET_RATE = 0.012
NOISE_SD = 0.8
HERE = Path(__file__).resolve().parent
DATA_NAME = "fraud.csv.gz"

# category: (share of transactions, spend vs the cardholder's average, P(card present), fraud log-odds)
CATEGORIES: dict[str, tuple[float, float, float, float]] = {
    "grocery": (0.22, 1.0, 0.95, -0.9),
    "fuel": (0.12, 0.9, 0.95, -0.3),
    "restaurants": (0.15, 0.7, 0.85, -0.5),
    "retail": (0.14, 1.5, 0.70, 0.0),
    "pharmacy": (0.05, 0.6, 0.90, -0.6),
    "entertainment": (0.07, 0.8, 0.50, 0.0),
    "travel": (0.05, 5.0, 0.25, 0.3),
    "electronics": (0.06, 4.0, 0.45, 1.3),
    "online_gaming": (0.05, 0.8, 0.00, 1.5),
    "digital_goods": (0.09, 0.5, 0.00, 1.0),
}
# Relative activity by hour of day (0-23): quiet at night, busiest around lunch and early evening.
HOUR_WEIGHTS = (
    1.0, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 4.0, 5.0, 5.5, 6.0,
    7.0, 6.5, 6.0, 6.0, 6.5, 7.0, 7.5, 7.0, 6.0, 5.0, 3.5, 2.0,
)  # fmt: skip
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DAY_WEIGHTS = (1.0, 1.0, 1.0, 1.05, 1.15, 1.2, 1.0)

COLUMNS: tuple[tuple[str, str], ...] = (
    ("transaction_id", "CATEGORICAL"),
    ("amount", "NUMERIC"),
    ("merchant_category", "CATEGORICAL"),
    ("hour", "NUMERIC"),
    ("day_of_week", "CATEGORICAL"),
    ("distance_from_home_km", "NUMERIC"),
    ("device_mismatch", "BINARY"),
    ("country_mismatch", "BINARY"),
    ("card_present", "BINARY"),
    ("txn_count_1h", "NUMERIC"),
    ("txn_count_24h", "NUMERIC"),
    ("amount_vs_avg_ratio", "NUMERIC"),
    ("account_age_days", "NUMERIC"),
    ("is_fraud", "BINARY"),
)

Table = dict[str, np.ndarray]


def category_param(category: np.ndarray, index: int) -> np.ndarray:
    """One field of CATEGORIES, looked up for every row."""
    names = np.array(list(CATEGORIES))
    values = np.array([fields[index] for fields in CATEGORIES.values()])
    order = np.argsort(names)
    return values[order][np.searchsorted(names[order], category)]


def draw_when(rng: np.random.Generator, n: int) -> Table:
    hour_p = np.asarray(HOUR_WEIGHTS) / sum(HOUR_WEIGHTS)
    day_p = np.asarray(DAY_WEIGHTS) / sum(DAY_WEIGHTS)
    return {"hour": rng.choice(24, n, p=hour_p), "day_of_week": rng.choice(DAYS, n, p=day_p)}


def draw_amounts(rng: np.random.Generator, category: np.ndarray) -> Table:
    """Amount = the cardholder's average spend x a ratio set by the category, with occasional splurges."""
    n = len(category)
    usual = np.exp(rng.normal(np.log(45.0), 0.6, n))
    splurge = np.where(rng.random(n) < 0.03, np.exp(rng.normal(1.2, 0.5, n)), 1.0)
    amount = np.round(np.maximum(usual * category_param(category, 1) * rng.lognormal(0.0, 0.55, n) * splurge, 0.5), 2)
    return {"amount": amount, "amount_vs_avg_ratio": np.round(amount / usual, 2)}


def draw_location(rng: np.random.Generator, category: np.ndarray, card_present: np.ndarray) -> Table:
    """Distance of the terminal (or the device's IP) from home; far-away transactions are often abroad."""
    n = len(category)
    travel = category == "travel"
    median_km = np.select([travel, card_present], [300.0, 6.0], 15.0)
    spread = np.where(card_present & ~travel, 1.0, 1.5)
    distance = np.round(np.minimum(median_km * np.exp(rng.normal(0.0, 1.0, n) * spread), 19_000.0), 1)
    p_abroad = 0.01 + 0.55 * (distance > 1500) + 0.05 * travel
    p_new_device = np.where(card_present, 0.005, 0.07)
    return {
        "distance_from_home_km": distance,
        "country_mismatch": rng.random(n) < p_abroad,
        "device_mismatch": rng.random(n) < p_new_device,
    }


def draw_history(rng: np.random.Generator, n: int) -> Table:
    """Velocity (earlier transactions on the card in the last hour / day) and the account's age."""
    count_1h = rng.poisson(0.3 * rng.gamma(1.0, 1.0, n))
    count_24h = count_1h + rng.poisson(2.0 * rng.gamma(2.0, 0.5, n))
    new_account = rng.random(n) < 0.04
    age = np.where(new_account, rng.integers(1, 61, n), 1 + np.floor(np.exp(rng.normal(np.log(900.0), 0.9, n))))
    age = np.minimum(age, 9_000).astype(int)
    return {"txn_count_1h": count_1h, "txn_count_24h": count_24h, "account_age_days": age}


def draw_transactions(rng: np.random.Generator, n: int) -> Table:
    """Every column but the target, as numpy arrays (booleans for the 0/1 columns)."""
    names = list(CATEGORIES)
    category = rng.choice(names, n, p=[CATEGORIES[c][0] for c in names])
    card_present = rng.random(n) < category_param(category, 2)
    return {
        "transaction_id": np.array([f"T{i:07d}" for i in range(1, n + 1)]),
        **draw_amounts(rng, category),
        "merchant_category": category,
        **draw_when(rng, n),
        **draw_location(rng, category, card_present),
        "card_present": card_present,
        **draw_history(rng, n),
    }


def fraud_logit(t: Table) -> np.ndarray:
    """The documented drivers, on the log-odds scale, without the intercept."""
    return (
        1.6 * (t["hour"] < 6)
        + 2.0 * ~t["card_present"]
        + 1.3 * np.clip(np.log(t["amount_vs_avg_ratio"]), -1.0, 3.0)
        + 2.4 * t["country_mismatch"]
        + 2.1 * t["device_mismatch"]
        + 0.75 * np.minimum(t["txn_count_1h"], 5)
        + 0.08 * np.minimum(t["txn_count_24h"], 20)
        + 1.3 * (t["account_age_days"] < 30)
        + category_param(t["merchant_category"], 3)
    )


def solve_intercept(logit: np.ndarray, rate: float) -> float:
    """The intercept b for which the mean of sigmoid(b + logit) equals rate (bisection; deterministic)."""
    lo, hi = -30.0, 30.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if np.mean(1.0 / (1.0 + np.exp(-(mid + logit)))) < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def draw_fraud(rng: np.random.Generator, t: Table) -> np.ndarray:
    """Drivers plus unobserved noise (sd NOISE_SD on the log-odds), calibrated to TARGET_RATE, then a coin flip."""
    logit = fraud_logit(t) + rng.normal(0.0, NOISE_SD, len(t["hour"]))
    p = 1.0 / (1.0 + np.exp(-(solve_intercept(logit, TARGET_RATE) + logit)))
    return rng.random(len(p)) < p


def to_rows(t: Table) -> list[list[str]]:
    """Format every cell as text: 0/1 flags, cents for amounts, one decimal for kilometres."""
    formats = {"amount": "{:.2f}", "amount_vs_avg_ratio": "{:.2f}", "distance_from_home_km": "{:.1f}"}
    cells: list[list[str]] = []
    for name, _ in COLUMNS:
        col = t[name]
        if col.dtype == bool:
            cells.append([str(int(v)) for v in col])
        else:
            cells.append([formats.get(name, "{}").format(v) for v in col])
    return [list(row) for row in zip(*cells, strict=True)]


def schema() -> dict[str, object]:
    return {
        "version": "1.0",
        "rowId": "transaction_id",
        "targetAttributeName": "is_fraud",
        "dataFormat": "CSV",
        "dataFileContainsHeader": True,
        "attributes": [{"attributeName": name, "attributeType": kind} for name, kind in COLUMNS],
        "excludedAttributeNames": [],
    }


def gzip_bytes(text: str) -> bytes:
    """Gzip with no file name and a zero timestamp in the header, so equal text gives equal bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as f:
        f.write(text.encode("utf-8"))
    return buffer.getvalue()


def write(out_dir: Path) -> Path:
    """Generate the table and write the gzipped CSV and its schema; return the data file's path."""
    rng = np.random.default_rng(SEED)
    table = draw_transactions(rng, N_ROWS)
    table["is_fraud"] = draw_fraud(rng, table)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([name for name, _ in COLUMNS])
    writer.writerows(to_rows(table))
    path = out_dir / DATA_NAME
    path.write_bytes(gzip_bytes(text.getvalue()))
    schema_path = out_dir / f"{DATA_NAME}.schema"
    schema_path.write_text(json.dumps(schema(), indent=2) + "\n", encoding="utf-8")
    return path


def check(path: Path) -> None:
    """Fit gradient boosting and logistic regression on 75 % of the rows; print the AUCs on the other 25 %."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    kinds = dict(COLUMNS)
    df = pd.read_csv(path, dtype={n: str for n, k in COLUMNS if k == "CATEGORICAL"})
    y = df.pop("is_fraud")
    df = df.drop(columns="transaction_id")
    numeric = [c for c in df.columns if kinds[c] != "CATEGORICAL"]
    categorical = [c for c in df.columns if kinds[c] == "CATEGORICAL"]
    x_train, x_test, y_train, y_test = train_test_split(df, y, test_size=0.25, stratify=y, random_state=0)
    one_hot = OneHotEncoder(handle_unknown="ignore")
    models = {
        "HistGradientBoostingClassifier": (
            ColumnTransformer([("num", "passthrough", numeric), ("cat", one_hot, categorical)], sparse_threshold=0),
            HistGradientBoostingClassifier(learning_rate=0.05, max_iter=300, early_stopping=True, random_state=0),
        ),
        "LogisticRegression": (
            ColumnTransformer([("num", StandardScaler(), numeric), ("cat", one_hot, categorical)]),
            LogisticRegression(max_iter=2000),
        ),
    }
    print(f"rows {len(df)}, fraud {y.mean():.2%} ({int(y.sum())} rows)")
    for name, (features, model) in models.items():
        pipe = make_pipeline(features, model).fit(x_train, y_train)
        score = pipe.predict_proba(x_test)[:, 1]
        auc, ap = roc_auc_score(y_test, score), average_precision_score(y_test, score)
        print(f"holdout AUC {name}: {auc:.3f} (average precision {ap:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="after writing, fit models and print holdout AUCs")
    parser.add_argument("--out-dir", type=Path, default=HERE, help="where to write (default: next to this script)")
    args = parser.parse_args()
    path = write(args.out_dir)
    print(f"wrote {path} ({path.stat().st_size:,} bytes) and {path.name}.schema")
    if args.check:
        check(path)


if __name__ == "__main__":
    main()
