"""DataFrames in and out of predictions: micro-batches encoded as JSON (NaN → null), answers as columns.

pandas is imported by the functions that need it, so a client that never scores a frame does not pay for it."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mlsvc.client.errors import APIResponseError
from mlsvc.resources import Model, ModelType, PredictResponse

if TYPE_CHECKING:
    import pandas as pd


def check_frame(frame: Any, batch_size: int) -> None:
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"predict_frame takes a pandas DataFrame, not {type(frame).__name__}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
    if not frame.columns.is_unique:
        dupes = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise ValueError(f"the DataFrame has duplicate column names: {dupes}")


def encode_batches(frame: pd.DataFrame, batch_size: int) -> Iterator[bytes]:
    """``{"records": [...]}`` bodies of up to ``batch_size`` rows. Missing values (NaN, None, NA, NaT) and
    infinities become null, which the server reads as a missing attribute; datetimes become ISO strings."""
    for start in range(0, len(frame), batch_size):
        part = frame.iloc[start : start + batch_size]
        records = part.to_json(orient="records", date_format="iso", double_precision=15, force_ascii=False)
        yield b'{"records":' + records.encode() + b"}"


def to_frame(frame: pd.DataFrame, model: Model, answers: list[PredictResponse]) -> pd.DataFrame:
    """One row per input row, on the input's index: ``predicted_label`` and ``score_<label>`` for each class
    (classification) or ``predicted_value`` (regression), then ``warnings`` (a list per row)."""
    import pandas as pd

    predictions = [p for answer in answers for p in answer.predictions or []]
    if len(predictions) != len(frame):
        raise APIResponseError(f"asked for {len(frame)} predictions, got {len(predictions)}")
    columns: dict[str, list[Any]] = {}
    if model.model_type == ModelType.REGRESSION:
        columns["predicted_value"] = [_number(p.predicted_value) for p in predictions]
    else:
        columns["predicted_label"] = [p.predicted_label for p in predictions]
        classes = list(model.classes or [])
        for p in predictions:  # a label the model's record does not list still gets its column
            classes += [c for c in (p.predicted_scores or {}) if c not in classes]
        for label in classes:
            columns[f"score_{label}"] = [_number((p.predicted_scores or {}).get(label)) for p in predictions]
    columns["warnings"] = [list(p.warnings) for p in predictions]
    out = pd.DataFrame(columns, index=frame.index)
    numeric = [c for c in out.columns if c == "predicted_value" or c.startswith("score_")]
    out = out.astype({c: "float64" for c in numeric}).astype({c: "object" for c in out.columns if c not in numeric})
    out.attrs.update(model_id=model.id, model_name=model.name, version=model.version)
    return out


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)
