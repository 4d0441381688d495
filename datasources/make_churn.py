"""Generate the example churn datasource: ``churn.csv`` and its Amazon ML schema ``churn.csv.schema``.

A synthetic telecom customer table of 5,000 rows. Customers are drawn first (contract, tenure,
services, billing, household, support calls, region), then whether each one churned is drawn from a
logistic model of documented drivers plus unobserved noise. See ``datasources/README.md``.

Usage::

    python datasources/make_churn.py           # rewrite churn.csv and churn.csv.schema (same bytes every run)
    python datasources/make_churn.py --check   # rewrite, then fit models on a holdout and print the AUCs

Generation needs numpy only; ``--check`` also needs pandas and scikit-learn.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

SEED = 20150409  # Amazon Machine Learning was announced on 9 April 2015
N_ROWS = 5_000
TARGET_RATE = 0.25
MISSING_RATE = 0.01
NEW_CUSTOMER_RATE = 0.003
HERE = Path(__file__).resolve().parent
CSV_NAME = "churn.csv"

CONTRACTS = ("month-to-month", "one-year", "two-year")
INTERNET = ("DSL", "fiber", "none")
PAYMENTS = ("electronic check", "mailed check", "bank transfer", "credit card")
# Service areas. Northeastern codes start with 0 and must stay strings: "02139", never 2139.
REGIONS = (
    "02139", "02108", "01002", "03301", "04101", "05401", "06511", "07030", "08540", "10001",
    "11201", "12207", "14604", "19104", "20001", "23219", "27701", "30303", "33101", "37203",
    "43215", "48201", "55401", "60601", "63101", "73301", "78701", "80202", "85004", "94103",
)  # fmt: skip
# Areas where a competitor launched cheap fiber: customers there churn more.
COMPETITOR_REGIONS = frozenset({"02139", "07030", "30303", "78701", "94103"})

COLUMNS: tuple[tuple[str, str], ...] = (
    ("customer_id", "CATEGORICAL"),
    ("tenure_months", "NUMERIC"),
    ("contract", "CATEGORICAL"),
    ("monthly_charges", "NUMERIC"),
    ("total_charges", "NUMERIC"),
    ("internet_service", "CATEGORICAL"),
    ("phone_service", "BINARY"),
    ("streaming_tv", "BINARY"),
    ("tech_support", "BINARY"),
    ("online_security", "BINARY"),
    ("paperless_billing", "BINARY"),
    ("payment_method", "CATEGORICAL"),
    ("senior_citizen", "BINARY"),
    ("partner", "BINARY"),
    ("dependents", "BINARY"),
    ("support_calls_90d", "NUMERIC"),
    ("region", "CATEGORICAL"),
    ("churned", "BINARY"),
)

Table = dict[str, np.ndarray]


def yes_no(flags: np.ndarray) -> np.ndarray:
    return np.where(flags, "yes", "no")


def draw_tenure(rng: np.random.Generator, contract: np.ndarray) -> np.ndarray:
    """Months as a customer: month-to-month customers are young, two-year customers old; 0 = joined this month."""
    n = len(contract)
    m2m = 1 + np.floor(rng.exponential(16.0, n))
    one_year = 1 + np.floor(rng.beta(2.0, 1.6, n) * 71)
    two_year = 1 + np.floor(rng.beta(3.0, 1.0, n) * 71)
    tenure = np.select([contract == "month-to-month", contract == "one-year"], [m2m, one_year], two_year)
    tenure = np.minimum(tenure, 72).astype(int)
    tenure[rng.random(n) < NEW_CUSTOMER_RATE] = 0
    return tenure


def draw_services(rng: np.random.Generator, n: int) -> Table:
    """Internet and add-on services; add-ons need internet, and everyone has at least one service."""
    internet = rng.choice(INTERNET, n, p=[0.34, 0.44, 0.22])
    has_net = internet != "none"
    fiber = internet == "fiber"
    return {
        "internet_service": internet,
        "phone_service": (rng.random(n) < 0.90) | ~has_net,
        "streaming_tv": has_net & (rng.random(n) < np.where(fiber, 0.50, 0.35)),
        "tech_support": has_net & (rng.random(n) < np.where(fiber, 0.30, 0.45)),
        "online_security": has_net & (rng.random(n) < np.where(fiber, 0.30, 0.45)),
    }


def draw_payment(rng: np.random.Generator, contract: np.ndarray, paperless: np.ndarray) -> np.ndarray:
    """Electronic check is most common among paperless month-to-month customers, automatic payment among the rest."""
    m2m = contract == "month-to-month"
    p_echeck = 0.18 + 0.17 * m2m + 0.12 * paperless
    rest = (1 - p_echeck) / 3
    u = rng.random(len(contract))
    bounds = np.cumsum(np.column_stack([p_echeck, rest, rest]), axis=1)
    return np.asarray(PAYMENTS)[(u[:, None] >= bounds).sum(axis=1)]


def draw_charges(rng: np.random.Generator, tenure: np.ndarray, services: Table) -> tuple[np.ndarray, np.ndarray]:
    """Monthly price from the services taken; total is about tenure x monthly, off by past price changes."""
    n = len(tenure)
    internet = services["internet_service"]
    monthly = (
        20.0 * services["phone_service"]
        + np.select([internet == "DSL", internet == "fiber"], [25.0, 50.0], 0.0)
        + 10.0 * services["streaming_tv"]
        + 5.0 * services["tech_support"]
        + 5.0 * services["online_security"]
        + rng.normal(0.0, 4.0, n)
    )
    monthly = np.round(np.maximum(monthly, 18.25), 2)
    total = np.round(tenure * monthly * rng.normal(1.0, 0.05, n), 2)
    return monthly, total


def draw_support_calls(rng: np.random.Generator, services: Table, senior: np.ndarray) -> np.ndarray:
    """Calls to support in the last 90 days: over-dispersed, more for fiber without tech support."""
    fiber_alone = (services["internet_service"] == "fiber") & ~services["tech_support"]
    rate = 0.5 + 1.0 * fiber_alone + 0.3 * senior
    return rng.poisson(rate * rng.gamma(2.0, 0.5, len(senior)))


def draw_customers(rng: np.random.Generator, n: int) -> Table:
    """Every column but the target, as numpy arrays (booleans for the yes/no columns)."""
    contract = rng.choice(CONTRACTS, n, p=[0.55, 0.21, 0.24])
    tenure = draw_tenure(rng, contract)
    services = draw_services(rng, n)
    paperless = rng.random(n) < np.where(contract == "month-to-month", 0.68, 0.50)
    monthly, total = draw_charges(rng, tenure, services)
    senior = rng.random(n) < 0.16
    partner = rng.random(n) < 0.48
    region_weights = rng.dirichlet(np.full(len(REGIONS), 2.0))
    return {
        "customer_id": np.array([f"C{i:06d}" for i in rng.choice(1_000_000, n, replace=False)]),
        "tenure_months": tenure,
        "contract": contract,
        "monthly_charges": monthly,
        "total_charges": total,
        **services,
        "paperless_billing": paperless,
        "payment_method": draw_payment(rng, contract, paperless),
        "senior_citizen": senior,
        "partner": partner,
        "dependents": rng.random(n) < np.where(partner, 0.50, 0.10),
        "support_calls_90d": draw_support_calls(rng, services, senior),
        "region": rng.choice(REGIONS, n, p=region_weights),
    }


def churn_logit(t: Table) -> np.ndarray:
    """The documented drivers, on the log-odds scale, without the intercept."""
    fiber = t["internet_service"] == "fiber"
    return (
        -0.90 * np.log1p(t["tenure_months"] / 6.0)
        + np.select([t["contract"] == "one-year", t["contract"] == "two-year"], [-1.2, -2.4], 0.0)
        + 0.40 * fiber
        + 0.95 * (fiber & ~t["tech_support"])
        - 0.40 * t["online_security"]
        + 0.65 * (t["payment_method"] == "electronic check")
        + 0.35 * np.minimum(t["support_calls_90d"], 6)
        + 0.025 * np.maximum(t["monthly_charges"] - 65.0, 0.0)
        + 0.25 * t["paperless_billing"]
        + 0.30 * t["senior_citizen"]
        - 0.20 * t["partner"]
        - 0.30 * t["dependents"]
        + 0.55 * np.isin(t["region"], list(COMPETITOR_REGIONS))
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


def draw_churn(rng: np.random.Generator, t: Table) -> np.ndarray:
    """Drivers plus unobserved customer noise (sd 0.6 on the log-odds), calibrated to TARGET_RATE, then a coin flip."""
    logit = churn_logit(t) + rng.normal(0.0, 0.6, len(t["contract"]))
    p = 1.0 / (1.0 + np.exp(-(solve_intercept(logit, TARGET_RATE) + logit)))
    return rng.random(len(p)) < p


def to_rows(rng: np.random.Generator, t: Table) -> list[list[str]]:
    """Format every cell as text: yes/no and 0/1 flags, blanks for new customers' totals and sprinkled gaps."""
    n = len(t["customer_id"])
    cells: dict[str, list[str]] = {}
    for name, _ in COLUMNS:
        col = t[name]
        if name == "senior_citizen":
            cells[name] = [str(int(v)) for v in col]
        elif col.dtype == bool:
            cells[name] = list(yes_no(col))
        elif name in ("monthly_charges", "total_charges"):
            cells[name] = [f"{v:.2f}" for v in col]
        else:
            cells[name] = [str(v) for v in col]
    for i in np.flatnonzero(t["tenure_months"] == 0):
        cells["total_charges"][i] = ""  # not billed yet
    for name in ("payment_method", "support_calls_90d"):
        for i in np.flatnonzero(rng.random(n) < MISSING_RATE):
            cells[name][i] = ""  # lost in a CRM migration
    return [[cells[name][i] for name, _ in COLUMNS] for i in range(n)]


def schema() -> dict[str, object]:
    return {
        "version": "1.0",
        "rowId": "customer_id",
        "targetAttributeName": "churned",
        "dataFormat": "CSV",
        "dataFileContainsHeader": True,
        "attributes": [{"attributeName": name, "attributeType": kind} for name, kind in COLUMNS],
        "excludedAttributeNames": [],
    }


def write(out_dir: Path) -> Path:
    """Generate the table and write the CSV and its schema; return the CSV's path."""
    rng = np.random.default_rng(SEED)
    table = draw_customers(rng, N_ROWS)
    table["churned"] = draw_churn(rng, table)
    rows = to_rows(rng, table)
    path = out_dir / CSV_NAME
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([name for name, _ in COLUMNS])
        writer.writerows(rows)
    schema_path = out_dir / f"{CSV_NAME}.schema"
    schema_path.write_text(json.dumps(schema(), indent=2) + "\n", encoding="utf-8")
    return path


def check(path: Path) -> None:
    """Fit gradient boosting and logistic regression on 75 % of the rows; print the AUCs on the other 25 %."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    kinds = dict(COLUMNS)
    df = pd.read_csv(path, dtype={n: str for n, k in COLUMNS if k != "NUMERIC"}, keep_default_na=False, na_values=[""])
    y = (df.pop("churned") == "yes").astype(int)
    df = df.drop(columns="customer_id")
    numeric = [c for c in df.columns if kinds[c] == "NUMERIC"]
    categorical = [c for c in df.columns if kinds[c] != "NUMERIC"]
    x_train, x_test, y_train, y_test = train_test_split(df, y, test_size=0.25, stratify=y, random_state=0)
    one_hot = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="missing"), OneHotEncoder(handle_unknown="ignore")
    )
    models = {
        "HistGradientBoostingClassifier": (
            ColumnTransformer([("num", "passthrough", numeric), ("cat", one_hot, categorical)], sparse_threshold=0),
            HistGradientBoostingClassifier(learning_rate=0.05, max_iter=300, early_stopping=True, random_state=0),
        ),
        "LogisticRegression": (
            ColumnTransformer(
                [
                    ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
                    ("cat", one_hot, categorical),
                ]
            ),
            LogisticRegression(max_iter=2000),
        ),
    }
    print(f"rows {len(df)}, churned {y.mean():.1%}, blank cells {int(df.isna().sum().sum())}")
    for name, (features, model) in models.items():
        pipe = make_pipeline(features, model).fit(x_train, y_train)
        auc = roc_auc_score(y_test, pipe.predict_proba(x_test)[:, 1])
        print(f"holdout AUC {name}: {auc:.3f}")


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
