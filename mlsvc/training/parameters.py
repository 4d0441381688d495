"""Amazon ML's training parameters (``sgd.*``): checked against the ranges Amazon documented and kept with the
model. mlsvc searches several families by validation rather than running one SGD, so none of them steers the
search; docs/amazon-ml.md says why each is accepted and what stands in for it."""

from __future__ import annotations

from collections.abc import Mapping

from mlsvc.errors import ErrorCode, MlsvcError

SHUFFLE_TYPES = ("none", "auto")
BUDGET = "mlsvc.timeBudgetSeconds"

# name → (what it is, its lowest and highest value), as Amazon ML's CreateMLModel documented them.
RANGES: dict[str, tuple[str, float, float]] = {
    "sgd.maxMLModelSizeInBytes": ("an integer", 100_000, 2_147_483_648),
    "sgd.maxPasses": ("an integer", 1, 10_000),
    "sgd.l1RegularizationAmount": ("a number", 0.0, float("inf")),
    "sgd.l2RegularizationAmount": ("a number", 0.0, float("inf")),
    # mlsvc's own: the search's time budget, which is what bounds its work (Amazon's SGD was bounded by passes).
    BUDGET: ("a number", 1.0, 24 * 3600.0),
}


def check_parameters(parameters: Mapping[str, str] | None) -> None:
    """VALIDATION_ERROR naming the parameter and its documented range when one is unknown or out of range."""
    for name, text in (parameters or {}).items():
        if name == "sgd.shuffleType":
            if text not in SHUFFLE_TYPES:
                raise _bad(f"sgd.shuffleType is one of {list(SHUFFLE_TYPES)}, not {text!r}")
            continue
        if name not in RANGES:
            known = sorted([*RANGES, "sgd.shuffleType"])
            raise _bad(f"unknown training parameter {name!r}; the parameters are {known}")
        kind, low, high = RANGES[name]
        try:
            value = int(text) if kind == "an integer" else float(text)
        except ValueError:
            raise _bad(f"{name} is {kind} from {low:g} to {high:g}, not {text!r}") from None
        if not low <= value <= high or value != value or value in (float("inf"), float("-inf")):
            raise _bad(f"{name} is {kind} from {low:g} to {high:g}, not {text!r}")
    l1 = float((parameters or {}).get("sgd.l1RegularizationAmount", 0) or 0)
    l2 = float((parameters or {}).get("sgd.l2RegularizationAmount", 0) or 0)
    if l1 and l2:
        raise _bad("give sgd.l1RegularizationAmount or sgd.l2RegularizationAmount, not both (as Amazon ML required)")


def time_budget(parameters: Mapping[str, str] | None) -> float | None:
    """The search's budget the parameters ask for, if they do."""
    text = (parameters or {}).get(BUDGET)
    return None if text is None else float(text)


def _bad(message: str) -> MlsvcError:
    return MlsvcError(ErrorCode.VALIDATION_ERROR, message)
