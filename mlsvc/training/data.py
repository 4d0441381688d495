"""Training data: a completed datasource's kept rows as a typed frame, and the target as labels or values."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from mlsvc.datasources.plan import ReadPlan, model_schema
from mlsvc.datasources.reader import DEFAULT_MAX_RECORD_BYTES
from mlsvc.datasources.scan import ScanCounts, scan
from mlsvc.datasources.values import BINARY_TRUE
from mlsvc.errors import ErrorCode, MlsvcError, did_you_mean
from mlsvc.objects import ObjectStore
from mlsvc.resources import Attribute, AttributeType, ModelType, Schema


@dataclass
class TrainingData:
    """Features (typed columns), the target encoded for scikit-learn, and how to read it back."""

    X: pd.DataFrame
    y: np.ndarray
    features: list[Attribute]
    model_type: ModelType
    classes: list[str] | None
    positive_label: str | None


def load(
    objects: ObjectStore,
    ds: Mapping[str, Any],
    target: str,
    model_type: ModelType | None,
    on_progress: Callable[[float], None],
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> TrainingData:
    """Read the datasource's kept, valid rows that have a target value into memory, ready to train on."""
    schema = Schema.model_validate(ds["schema"]).model_copy(update={"targetAttributeName": target})
    attribute = schema.attribute(target)
    if attribute is None:
        names = [a.attributeName for a in schema.attributes]
        raise MlsvcError(
            ErrorCode.INVALID_REQUEST, f"column '{target}' not found{did_you_mean(target, names)}; columns are {names}"
        )
    features = schema.feature_attributes()
    if not features:
        raise MlsvcError(ErrorCode.INVALID_DATA, "the datasource has no attributes to learn from besides the target")
    plan = ReadPlan.of_datasource(objects, ds, schema, max_record_bytes)
    X, raw_y = read_rows(objects, plan, features, on_progress)
    return _encode_target(X, raw_y, attribute, model_type, features)


def load_labelled(
    objects: ObjectStore,
    ds: Mapping[str, Any],
    features: list[Attribute],
    target: str,
    on_progress: Callable[[float], None],
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> tuple[pd.DataFrame, pd.Series]:
    """A datasource's rows as a trained model sees them: its features, typed as at training, and the target."""
    ds_schema = Schema.model_validate(ds["schema"])
    if ds_schema.attribute(target) is None:
        names = [a.attributeName for a in ds_schema.attributes]
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"datasource '{ds['id']}' has no column '{target}' (the model's target)"
            f"{did_you_mean(target, names)}; columns are {names}",
        )
    schema = model_schema(ds_schema, features, ds["id"]).model_copy(update={"targetAttributeName": target})
    return read_rows(objects, ReadPlan.of_datasource(objects, ds, schema, max_record_bytes), features, on_progress)


def read_table(
    objects: ObjectStore,
    ds: Mapping[str, Any],
    on_progress: Callable[[float], None],
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> pd.DataFrame:
    """Every kept, valid row of a datasource, all its attributes typed (interactions and item tables)."""
    schema = Schema.model_validate(ds["schema"]).model_copy(update={"targetAttributeName": None})
    plan = ReadPlan.of_datasource(objects, ds, schema, max_record_bytes)
    frames = [chunk.typed for chunk in scan(objects, plan, ScanCounts(), on_progress)]
    if not frames:
        raise MlsvcError(ErrorCode.INVALID_DATA, f"{plan.source} has no rows to read")
    return pd.concat(frames, ignore_index=True)


def read_rows(
    objects: ObjectStore, plan: ReadPlan, features: list[Attribute], on_progress: Callable[[float], None]
) -> tuple[pd.DataFrame, pd.Series]:
    """The features of the plan's rows that have a value for its schema's target, and those values as read."""
    target = plan.schema.targetAttributeName
    assert target is not None, "read_rows needs a plan whose schema names the target"
    frames, targets = [], []
    names = [a.attributeName for a in features]
    for chunk in scan(objects, plan, ScanCounts(), on_progress):
        assert chunk.raw_target is not None
        has_target = (chunk.raw_target != "").to_numpy() & chunk.typed[target].notna().to_numpy()
        frames.append(chunk.typed.loc[has_target, names])
        targets.append(chunk.raw_target[has_target])
    if not frames or sum(len(f) for f in frames) == 0:
        raise MlsvcError(ErrorCode.INVALID_DATA, f"no rows of {plan.source} have a value for '{target}'")
    X = pd.concat(frames, ignore_index=True)
    # pandas' default string Index is Arrow-backed, and scikit-learn walks the column names in Python at every fit
    # and transform: on 10,000 columns a plain object Index halves the cost of each call. The names are the same.
    X.columns = pd.Index(list(X.columns), dtype=object)
    return X, pd.concat(targets, ignore_index=True)


def encode_labels(raw_y: pd.Series, classes: list[str]) -> np.ndarray:
    """Target labels as the class codes a trained model uses; a label it never saw is an error."""
    codes = {label: i for i, label in enumerate(classes)}
    unknown = sorted(set(raw_y.unique()) - set(codes))
    if unknown:
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"target values {unknown[:10]} were not seen when the model was trained; it knows {classes}",
        )
    return raw_y.map(codes).to_numpy(dtype=np.int64)


def encode_values(raw_y: pd.Series, target: str) -> np.ndarray:
    values = pd.to_numeric(raw_y, errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(values).any():
        raise MlsvcError(
            ErrorCode.INVALID_REQUEST,
            f"target '{target}' has values that are not numbers; a REGRESSION target must be NUMERIC",
        )
    return values


def split_holdout(data: TrainingData, fraction: float, seed: int) -> tuple[TrainingData, TrainingData]:
    """Rows for training and rows held out for the evaluation, stratified by class where possible (a class with a
    single row is trained on, not held out)."""
    fit_idx, hold_idx = split_rows(len(data.X), class_codes(data), seed, test_size=fraction)
    return _take(data, fit_idx), _take(data, hold_idx)


def sample(data: TrainingData, rows: int, seed: int) -> TrainingData:
    """``rows`` of the rows, stratified by class where possible; all of them when there are no more."""
    if rows >= len(data.X):
        return data
    return _take(data, split_rows(len(data.X), class_codes(data), seed, train_size=rows)[0])


def class_codes(data: TrainingData) -> np.ndarray | None:
    """The labels to stratify by: the class codes, or None for a regression target."""
    return None if data.model_type == ModelType.REGRESSION else data.y


def split_rows(
    n_rows: int, y: np.ndarray | None, seed: int, *, test_size: float | None = None, train_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The indices of ``n_rows`` rows in two sorted parts (sized as ``train_test_split`` sizes them), stratified by
    the class codes ``y`` where it can be: the row of a class that has only one cannot be on both sides, so it stays
    on the first (fitting) side, and when a side is too small to hold every class the split is a plain random one."""
    idx = np.arange(n_rows)
    if y is None:
        first, second = train_test_split(idx, test_size=test_size, train_size=train_size, random_state=seed)
        return np.sort(first), np.sort(second)
    lone = np.bincount(y)[y] < 2
    rest = idx[~lone]
    if train_size is not None:
        train_size = max(1, train_size - int(lone.sum()))
    try:
        first, second = train_test_split(
            rest, test_size=test_size, train_size=train_size, random_state=seed, stratify=y[rest]
        )
    except ValueError:  # a side with fewer rows than there are classes
        first, second = train_test_split(rest, test_size=test_size, train_size=train_size, random_state=seed)
    return np.sort(np.concatenate([first, idx[lone]])), np.sort(second)


def lone_classes(data: TrainingData, target: str) -> list[str]:
    """The classes that have a single row, which a model is trained on but that can be neither held out nor
    stratified. Refuses a target where that leaves nothing to train and evaluate: a BINARY target needs two rows
    of each value (one to learn from, one to evaluate on), a MULTICLASS one at least two values with two rows."""
    if data.classes is None:
        return []
    counts = np.bincount(data.y, minlength=len(data.classes))
    lone = [label for label, count in zip(data.classes, counts, strict=True) if count < 2]
    common = [label for label, count in zip(data.classes, counts, strict=True) if count >= 2]
    if data.model_type == ModelType.BINARY and lone:
        label = lone[0]
        other = next(c for c in data.classes if c != label)
        others = int(counts[data.classes.index(other)])
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"target '{target}' has a single row with the value '{label}' (and {others:,} with '{other}'): a "
            "BINARY model needs at least 2 rows of each value, one to learn from and one to evaluate on. Add "
            f"rows where '{target}' is '{label}' to the data, or choose another target",
            {"target": target, "rows_per_value": {label: 1, other: others}},
        )
    if len(common) < 2:
        shown = f"only '{common[0]}' has" if common else "no value has"
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"target '{target}' has {len(data.classes)} values but {shown} more than one row: there is nothing to "
            "learn to tell apart. Add rows of the other values to the data, or choose another target",
            {"target": target, "single_row_values": lone[:20]},
        )
    return lone


def _take(data: TrainingData, idx: np.ndarray) -> TrainingData:
    return replace(data, X=data.X.iloc[idx].reset_index(drop=True), y=data.y[idx])


def infer_model_type(attribute: Attribute, distinct: int) -> ModelType:
    """BINARY and two-level targets are binary, other categories multiclass, numbers regression."""
    if attribute.attributeType == AttributeType.TEXT:
        raise MlsvcError(
            ErrorCode.INVALID_REQUEST,
            f"target '{attribute.attributeName}' is TEXT; a target must be BINARY, CATEGORICAL or NUMERIC",
        )
    if attribute.attributeType == AttributeType.NUMERIC:
        return ModelType.REGRESSION
    return ModelType.BINARY if distinct <= 2 else ModelType.MULTICLASS


def _encode_target(
    X: pd.DataFrame, raw_y: pd.Series, attribute: Attribute, model_type: ModelType | None, features: list[Attribute]
) -> TrainingData:
    labels = sorted(raw_y.unique().tolist())
    model_type = model_type or infer_model_type(attribute, len(labels))
    if model_type == ModelType.REGRESSION:
        return TrainingData(X, encode_values(raw_y, attribute.attributeName), features, model_type, None, None)
    if len(labels) < 2:
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"target '{attribute.attributeName}' has only one value ({labels}); nothing to learn",
        )
    if model_type == ModelType.BINARY and len(labels) != 2:
        raise MlsvcError(
            ErrorCode.INVALID_REQUEST,
            f"a BINARY model needs exactly two target values; '{attribute.attributeName}' has "
            f"{len(labels)}: {labels[:10]}",
        )
    if model_type == ModelType.BINARY:
        labels = _negative_then_positive(labels)
    y = encode_labels(raw_y, labels)
    return TrainingData(X, y, features, model_type, labels, labels[1] if model_type == ModelType.BINARY else None)


def _negative_then_positive(labels: list[str]) -> list[str]:
    """The positive class is the one that reads as true (1, yes, true…); otherwise the later one in order."""
    first, second = labels
    if first.strip().lower() in BINARY_TRUE and second.strip().lower() not in BINARY_TRUE:
        return [second, first]
    return [first, second]
