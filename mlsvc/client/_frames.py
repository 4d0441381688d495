"""DataFrames in and out of predictions: columns typed as the model's schema types them, micro-batches encoded as
JSON (NaN → null), answers as columns.

pandas is imported by the functions that need it, so a client that never scores a frame does not pay for it."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from mlsvc.client.errors import APIResponseError
from mlsvc.resources import AttributeType, Model, ModelType, PredictResponse

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


def numeric_codes(frame: pd.DataFrame, model: Model) -> list[str]:
    """The columns pandas read as numbers that the model reads as CATEGORICAL codes (a ZIP code, a region):
    ``pd.read_csv`` turns ``02139`` into the integer 2139, and 2139 with NaN into the float 2139.0."""
    categorical = {a.attributeName for a in model.features if a.attributeType == AttributeType.CATEGORICAL}
    return [name for name in frame.columns if name in categorical and _whole_numbers(frame[name])]


def _whole_numbers(column: pd.Series) -> bool:
    import pandas as pd

    if pd.api.types.is_integer_dtype(column):
        return True
    return pd.api.types.is_float_dtype(column) and bool((column.dropna() % 1 == 0).all())


def code_width(summary: Mapping[str, Any] | None) -> int | None:
    """The width the training data wrote an attribute's digit codes in, from its statistics: 5 when they were
    zero-padded ("02139", "33101"); 0 when they carry no leading zeros, so an integer is the code as written;
    None when the statistics cannot tell (not computed, or frequent codes without zeros and rarer ones unseen)."""
    summary = summary or {}
    levels = [str(v.get("value")) for v in summary.get("top_values") or []]
    if not levels:
        return None
    digits = [v for v in levels if v.isascii() and v.isdigit()]
    if not digits:
        return 0  # codes that are not numbers: there are no zeros an integer column could have lost
    widths = {len(v) for v in digits}
    if any(len(v) > 1 and v.startswith("0") for v in digits):
        return widths.pop() if len(widths) == 1 else None
    every_level_listed = bool(summary.get("top_counts_exact")) and summary.get("distinct") == len(levels)
    return 0 if every_level_listed or len(widths) > 1 else None


def as_model_types(frame: pd.DataFrame, codes: list[str], statistics: Mapping[str, Any] | None) -> pd.DataFrame:
    """``frame`` with the ``codes`` columns as the text the model was trained on: integers as digits, zero-padded
    to the training data's width where it had one. Where the statistics of the training data cannot tell whether
    leading zeros were lost, the column is sent as its digits with a warning."""
    attributes: Mapping[str, Any] = (statistics or {}).get("attributes") or {}
    texts = {}
    for name in codes:
        width = code_width(attributes.get(name))
        if width is None:
            warnings.warn(_lost_zeros(name, frame[name]), UserWarning, stacklevel=3)
        texts[name] = frame[name].map(lambda v, w=width or 0: _code(v, w), na_action="ignore").astype(object)
    return frame.assign(**texts)


def _lost_zeros(name: str, column: pd.Series) -> str:
    present = column.dropna()
    first = _code(present.iloc[0], 0) if len(present) else None
    sent = f"{first} is sent as {first!r}, and " if first else ""
    return (
        f"column {name!r} holds numbers, but the model reads {name!r} as CATEGORICAL codes: {sent}codes the CSV "
        f"wrote with leading zeros lost them when pandas read it ('02139' became 2139), which the training data's "
        f"statistics cannot rule out. Read the CSV with pd.read_csv(..., dtype={{{name!r}: str}}) to keep the "
        f"codes as written."
    )


def _code(value: Any, width: int) -> str:
    digits = str(int(value))
    return digits if digits.startswith("-") else digits.zfill(width)


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
