"""The model job's time budget: one clock for every phase, what each phase may spend, and what was cut to keep it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# Registering a model in MLflow cannot be cut short, so the search leaves it time: a fixed part (the run and a child
# run per candidate), and a part per input column (MLflow's signature and input example, skops' copy of every column
# list the pipeline holds). Measured on a 2-core machine: 0.3 s for 16 columns, 1 s for 1,000, and 4 s for 10,000
# when idle, 10 s when busy.
REGISTER_S = 1.0
REGISTER_S_PER_COLUMN = 0.0005
# The holdout evaluation and the attribute importances share this part of the budget, at most, but may always
# take AFTER_SEARCH_FLOOR_S (part of the fixed allowance a job may run past its budget by).
AFTER_SEARCH_SHARE = 0.15
AFTER_SEARCH_FLOOR_S = 2.0
# The search keeps at least this part of the budget, whatever the other phases are expected to take: it is what the
# budget is for, and the fixed part of the registration estimate is most of a small budget.
MIN_SEARCH_SHARE = 0.25


def registration_estimate(n_columns: int) -> float:
    """Seconds that logging and registering a model of ``n_columns`` input columns is expected to take."""
    return REGISTER_S + REGISTER_S_PER_COLUMN * n_columns


@dataclass
class JobClock:
    """The budget of one model job, counted from the job's start, and notes of what was sampled or skipped."""

    budget_s: float
    started: float = field(default_factory=time.monotonic)
    notes: list[str] = field(default_factory=list)
    laps: dict[str, float] = field(default_factory=dict)  # seconds each phase took, in order

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def left(self) -> float:
        return self.budget_s - self.elapsed

    def lap(self, phase: str) -> None:
        """Record the seconds since the previous lap (or the start) as ``phase``'s."""
        self.laps[phase] = round(self.elapsed - sum(self.laps.values()), 3)

    def search_budget(self, n_columns: int) -> float:
        """What the search (with the refit of its winner) may spend: what is left of the budget after reading the
        data, less what the phases after it need."""
        later = AFTER_SEARCH_SHARE * self.budget_s + registration_estimate(n_columns)
        return max(MIN_SEARCH_SHARE * self.budget_s, self.left - later)

    def before_registration(self, n_columns: int) -> float:
        """Seconds the phases between the search and the registration (the holdout evaluation, the importances)
        may still spend."""
        left = self.left - registration_estimate(n_columns)
        return max(AFTER_SEARCH_FLOOR_S, min(AFTER_SEARCH_SHARE * self.budget_s, left))

    def message(self) -> str:
        """The resource's message: what was sampled or skipped to keep the budget, in one sentence."""
        if not self.notes:
            return ""
        return f"To keep the {self.budget_s:g} s time budget: " + "; ".join(self.notes) + "."
