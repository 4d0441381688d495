"""Real-time scoring: records (JSON objects) → typed rows → the model's pipeline → predictions with warnings."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlsvc.datasources.values import coerce_frame
from mlsvc.resources import Attribute, ModelType, Prediction, Schema


@dataclass(frozen=True)
class ModelCard:
    """What scoring needs to know about a model, besides its pipeline."""

    model_id: str
    version: int
    model_type: ModelType
    features: list[Attribute]
    classes: list[str] | None
    score_threshold: float | None

    @classmethod
    def from_resource(cls, model: Mapping[str, Any]) -> ModelCard:
        return cls(model["id"], int(model["version"]), ModelType(model["model_type"]),
                   [Attribute.model_validate(a) for a in model["features"]], model.get("classes"),
                   model.get("score_threshold"))


class Scorer:
    """Scores records with one fitted pipeline; a missing attribute is a missing value, as in Amazon ML."""

    def __init__(self, card: ModelCard, pipeline: Any) -> None:
        self.card = card
        self.pipeline = pipeline
        self.schema = Schema(attributes=card.features)
        self.columns = [a.attributeName for a in card.features]
        self._known = set(self.columns)

    def predict(self, records: list[Mapping[str, Any]], score_threshold: float | None = None) -> list[Prediction]:
        raw, warnings = self._raw_frame(records)
        typed, invalid = coerce_frame(raw, self.schema)
        for row, column in zip(*np.nonzero(invalid.to_numpy()), strict=True):
            name = invalid.columns[column]
            warnings[row].append(f"attribute '{name}': {records[row][name]!r} is not a valid "
                                 f"{self.schema.attribute(name).attributeType.value} value; treated as missing")
        typed = typed[self.columns]
        if self.card.model_type == ModelType.REGRESSION:
            values = self.pipeline.predict(typed)
            return [Prediction(predicted_value=float(v), warnings=w) for v, w in zip(values, warnings, strict=True)]
        proba = self.pipeline.predict_proba(typed)
        threshold = self.card.score_threshold if score_threshold is None else score_threshold
        return [self._classification(p, threshold, w) for p, w in zip(proba, warnings, strict=True)]

    def _classification(self, proba: np.ndarray, threshold: float | None, warnings: list[str]) -> Prediction:
        classes = self.card.classes or []
        scores = {label: float(p) for label, p in zip(classes, proba, strict=True)}
        if self.card.model_type == ModelType.BINARY:
            label = classes[1] if proba[1] >= (0.5 if threshold is None else threshold) else classes[0]
        else:
            label = classes[int(np.argmax(proba))]
        return Prediction(predicted_label=label, predicted_scores=scores, warnings=warnings)

    def _raw_frame(self, records: list[Mapping[str, Any]]) -> tuple[pd.DataFrame, list[list[str]]]:
        """Records as the raw string tokens a CSV row would hold; unknown attributes are listed, not used."""
        warnings: list[list[str]] = []
        rows: list[list[str]] = []
        for record in records:
            unknown = sorted(k for k in record if k not in self._known)
            notes = [f"attribute '{k}' is not used by this model; ignored" for k in unknown]
            nested = [c for c in self.columns if isinstance(record.get(c), list | dict)]
            notes += [f"attribute '{c}': a {type(record[c]).__name__} is not a valid value; treated as missing"
                      for c in nested]
            warnings.append(notes)
            rows.append([_token(record.get(c)) for c in self.columns])
        return pd.DataFrame(rows, columns=self.columns, dtype=object), warnings


def _token(value: Any) -> str:
    """JSON values as CSV tokens: null is blank, true/false are words, and a nested value (already reported)
    is missing."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    if isinstance(value, int | float | str):
        return str(value)
    return ""


class ScorerCache:
    """A bounded LRU of loaded scorers per model id, shared by the threads of one process."""

    def __init__(self, load: Callable[[Mapping[str, Any]], Scorer], capacity: int = 16) -> None:
        self._load = load
        self._capacity = capacity
        self._items: OrderedDict[str, Scorer] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, model: Mapping[str, Any]) -> Scorer:
        key = model["id"]
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # one load per model even when many requests arrive together
            with self._lock:
                if key in self._items:
                    return self._items[key]
            scorer = self._load(model)
            with self._lock:
                self._items[key] = scorer
                self._items.move_to_end(key)
                while len(self._items) > self._capacity:
                    self._items.popitem(last=False)
                self._loading.pop(key, None)
        return scorer
