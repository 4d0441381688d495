"""Data the tests send: records from the churn example, two churn customers at either end of the risk, and the
iris table as a CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import load_iris

from tests.servers import CHURN

RISKY = {
    "tenure_months": 1,
    "contract": "month-to-month",
    "internet_service": "fiber",
    "tech_support": "no",
    "payment_method": "electronic check",
    "support_calls_90d": 6,
    "monthly_charges": 105,
}
LOYAL = {
    "tenure_months": 70,
    "contract": "two-year",
    "internet_service": "DSL",
    "tech_support": "yes",
    "payment_method": "bank transfer",
    "support_calls_90d": 0,
    "monthly_charges": 40,
}
IRIS_CLASSES = ["setosa", "versicolor", "virginica"]


def churn_records(rows: int, skip: int = 0) -> list[dict[str, Any]]:
    """Rows of the churn example as a user would send them: every value as the CSV has it (an empty one left
    out), without the row id and the target."""
    frame = pd.read_csv(CHURN, dtype=str, keep_default_na=False, skiprows=range(1, skip + 1), nrows=rows)
    frame = frame.drop(columns=["customer_id", "churned"])
    return [{k: v for k, v in row.items() if v != ""} for row in frame.to_dict(orient="records")]


def iris_frame() -> pd.DataFrame:
    """Iris with plain column names (sepal_length, …, petal_width) and the species by name."""
    data = load_iris(as_frame=True)
    frame = data.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    frame["species"] = np.array(data.target_names)[data.target]
    return frame


def iris_csv(folder: Path) -> Path:
    path = folder / "iris.csv"
    iris_frame().to_csv(path, index=False)
    return path
