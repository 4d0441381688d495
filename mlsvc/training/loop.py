"""The train / validate / select loop: successive halving over candidate families under a time budget,
an optional soft-voting ensemble, and the winner refit on every training row."""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingClassifier, VotingClassifier, VotingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.resources import ModelType
from mlsvc.training.candidates import BY_NAME, Family, Params, families_for
from mlsvc.training.data import TrainingData, split_rows
from mlsvc.training.metrics import HIGHER_IS_BETTER, SELECTION_METRIC, selection_score
from mlsvc.training.recipe import build_preprocessor
from mlsvc.training.targets import LOG1P, on_log_scale, worth_a_log

CV_MAX_ROWS = 20_000  # k-fold cross-validation below this many training rows, one holdout above
CV_FOLDS = 5
FIRST_RUNG_ROWS = (1_000, 20_000)  # the first rung's subsample: at least, at most
ETA = 3  # successive halving keeps the best 1/ETA of each rung and gives them ETA times the rows
MAX_CONFIGS = 36
ENSEMBLE_SIZE = 3
# A model that predicts more than SLOWER_TO_PREDICT times slower than another option must validate at least
# MIN_RELATIVE_GAIN better than it (relative to its score) to be selected over it: every batch row and every
# real-time request pays for the difference, and a gain within validation noise does not (a k-NN member, tens of µs
# a row, made the default churn ensemble score 10M rows no faster than a script did).
SLOWER_TO_PREDICT = 4.0
MIN_RELATIVE_GAIN = 0.003

Progress = Callable[[float, str], None]


def default_budget_s(n_rows: int, n_features: int) -> float:
    """A budget that grows with the table: 30 s for small data, up to 15 minutes for large."""
    return float(min(900.0, max(30.0, n_rows * max(1, n_features) / 20_000)))


@dataclass
class Config:
    """One family with one set of parameters: a point of the search."""

    key: str
    family: Family
    params: Params


@dataclass
class Trial:
    """A config validated on ``rows`` training rows."""

    config: Config
    rung: int
    rows: int
    score: float
    score_std: float
    fit_s: float
    predict_s: float
    folds: int = 1  # the folds validated: fewer than planned when the budget ran out between two of them
    # At the last rung: the predictions for the validation rows ``output_idx`` (out-of-fold under k-fold),
    # which is what an ensemble of finalists is scored on without fitting anything again.
    output: np.ndarray | None = None
    output_idx: np.ndarray | None = None


@dataclass(frozen=True)
class Option:
    """What may be selected: one finalist, or a soft-voting ensemble of finalists of different families, with its
    validation score and its models' cost to predict a row (features aside)."""

    members: tuple[Trial, ...]
    score: float
    model_s_per_row: float
    weights: tuple[float, ...] | None = None  # an ensemble's, fitted on its members' out-of-fold predictions

    @property
    def key(self) -> str:
        keys = [m.config.key for m in self.members]
        return keys[0] if len(keys) == 1 else "ensemble of " + ", ".join(keys)


@dataclass
class Outcome:
    """The selected pipeline refit on all training rows, its validation score, and every candidate tried."""

    pipeline: Pipeline | BaseEstimator
    metric: str
    validation_score: float
    selected: str
    leaderboard: list[dict[str, Any]]
    search_s: float
    refit_s: float
    notes: list[str] = field(default_factory=list)  # what the budget made the search leave out, for the message
    predict_s_per_row: float = 0.0  # the selected pipeline's pace at predicting, as seen in the search


@dataclass
class _Clock:
    budget_s: float
    started: float = field(default_factory=time.perf_counter)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def left(self) -> float:
        return self.budget_s - self.elapsed


def make_pipeline(config: Config, data: TrainingData, recipe: dict[str, Any], seed: int, n_jobs: int) -> Pipeline:
    numeric = config.params.get("numeric") if config.family.linear else None
    features = build_preprocessor(data.features, recipe, numeric=numeric, dense=config.family.dense_input)
    model_params = {k: v for k, v in config.params.items() if k not in ("numeric", "target")}
    estimator = config.family.build(data.model_type, model_params, seed, n_jobs)
    if config.params.get("target") == LOG1P and data.model_type == ModelType.REGRESSION:
        estimator = on_log_scale(estimator)
    return Pipeline([("features", features), ("model", estimator)])


def predict_output(pipeline: Any, model_type: ModelType, X: Any, n_classes: int) -> np.ndarray:
    """What a metric scores: P(positive) for binary, class probabilities for multiclass, values for regression."""
    if model_type == ModelType.REGRESSION:
        return np.asarray(pipeline.predict(X), dtype=np.float64)
    proba = pipeline.predict_proba(X)
    if proba.shape[1] != n_classes:  # a class absent from a small fitting split
        full = np.zeros((proba.shape[0], n_classes))
        full[:, pipeline.classes_] = proba
        proba = full
    return proba[:, 1] if model_type == ModelType.BINARY else proba


def fit_quietly(pipeline: Any, X: Any, y: np.ndarray) -> Any:
    """Fit without the warnings that searching provokes by design (bins merged on skewed columns, an
    iteration cap reached by a sampled configuration): the validation score already judges them."""
    if not _early_stopping_can_stratify(y):
        _stop_on_training_loss(pipeline)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return pipeline.fit(X, y)


EARLY_STOPPING_FRACTION = 0.1  # what HistGradientBoosting and the MLP hold out of their rows to stop early on


def _early_stopping_can_stratify(y: np.ndarray) -> bool:
    """Whether a stratified early-stopping split of ``y`` is possible: every class has two rows, and each side
    has a row per class. Regression targets (floats) are not stratified."""
    if y.dtype.kind not in "iu" or len(y) == 0:
        return True
    counts = np.bincount(y)
    present = counts[counts > 0]
    held = math.ceil(EARLY_STOPPING_FRACTION * len(y))
    return bool(present.min() >= 2 and min(held, len(y) - held) >= len(present))


def _stop_on_training_loss(pipeline: Any) -> None:
    """HistGradientBoosting and the MLP hold out a stratified share of their rows to stop early, which scikit-learn
    refuses when a class has a single row; then they stop on their training loss instead (every model in an
    ensemble too: VotingClassifier fits clones, which copy these parameters)."""
    for estimator in [pipeline, *pipeline.get_params(deep=True).values()]:
        if isinstance(estimator, HistGradientBoostingClassifier):
            estimator.set_params(validation_fraction=None)
        elif isinstance(estimator, MLPClassifier):
            estimator.set_params(early_stopping=False)


@dataclass
class Validated:
    """A candidate's validation, and what the search learns of its family's pace from it."""

    trial: Trial
    model_s: float
    planned_folds: int
    fitted_rows: int
    validated_rows: int


@dataclass
class Validator:
    """One candidate validated on a rung's rows, the same wherever it runs (in the search's process, or on a Dask
    worker): the training data, the recipe, the seed, and the threads one fit may use."""

    data: TrainingData
    recipe: dict[str, Any]
    seed: int
    n_jobs: int
    _last_subsample: tuple[int, Any, np.ndarray] | None = field(default=None, repr=False)

    @property
    def n_classes(self) -> int:
        return len(self.data.classes or [])

    def folds(self, rows: int, last: bool) -> int:
        return CV_FOLDS if last and rows <= CV_MAX_ROWS else 1

    def run(self, config: Config, rung: int, rows: int, last: bool, deadline_at: float) -> Validated:
        """Validate ``config`` on ``rows`` rows; folds stop once another would end past ``deadline_at`` (wall
        clock, ``time.time()``: the same instant on every machine of a cluster)."""
        X, y = self.subsample(rows)
        scores, fit_s, predict_s, model_s = [], 0.0, 0.0, 0.0
        planned = self.splits(y, last)
        splits: list[tuple[np.ndarray, np.ndarray]] = []
        outputs: list[np.ndarray] = []
        for fit_idx, val_idx in planned:
            if splits and self._no_time_for_another_fold(fit_s + predict_s, splits, last, deadline_at):
                break
            splits.append((fit_idx, val_idx))
            pipeline = make_pipeline(config, self.data, self.recipe, self.seed, self.n_jobs)
            started = time.perf_counter()
            fit_quietly(pipeline, X.iloc[fit_idx], y[fit_idx])
            fit_s += time.perf_counter() - started
            started = time.perf_counter()
            features = pipeline[:-1].transform(X.iloc[val_idx])
            modelled = time.perf_counter()
            out = predict_output(pipeline[-1], self.data.model_type, features, self.n_classes)
            model_s += time.perf_counter() - modelled
            predict_s += time.perf_counter() - started
            scores.append(selection_score(self.data.model_type, y[val_idx], out))
            outputs.append(out)
        sign = 1.0 if HIGHER_IS_BETTER[SELECTION_METRIC[self.data.model_type]] else -1.0
        valid = [s for s in scores if np.isfinite(s)]
        score = float(np.mean(valid)) if valid else -sign * np.inf
        std = float(np.std(valid)) if valid else 0.0
        trial = Trial(config, rung, rows, score, std, fit_s, predict_s, len(splits))
        if len(splits) == len(planned) and last:  # out-of-fold predictions of every row, for ensembles
            trial.output = np.concatenate(outputs)
            trial.output_idx = np.concatenate([v for _, v in splits])
        fitted = sum(len(f) for f, _ in splits)
        validated = sum(len(v) for _, v in splits)
        return Validated(trial, model_s, len(planned), fitted, validated)

    def _no_time_for_another_fold(
        self, spent: float, done: list[tuple[np.ndarray, np.ndarray]], last: bool, deadline_at: float
    ) -> bool:
        """Whether one more fold, at the pace of those done, would end past ``deadline_at``; on the last rung the
        winner's refit on every row must fit too. The first fold runs whatever it costs (the search needs a
        candidate), and this is what keeps it from running five folds past the budget."""
        next_fold = spent / len(done)
        fitted = sum(len(f) for f, _ in done)
        refit = next_fold / max(1, fitted / len(done)) * len(self.data.X) if last else 0.0
        return time.time() + next_fold + refit > deadline_at

    def subsample(self, rows: int) -> tuple[Any, np.ndarray]:
        n = len(self.data.X)
        if rows >= n:
            return self.data.X, self.data.y
        # Every config of a rung validates on the same rows; a stratified draw from a million rows takes a second.
        if self._last_subsample is None or self._last_subsample[0] != rows:
            idx, _ = split_rows(n, self._classes(self.data.y), self.seed, train_size=rows)
            self._last_subsample = (rows, self.data.X.iloc[idx], self.data.y[idx])
        return self._last_subsample[1], self._last_subsample[2]

    def splits(self, y: np.ndarray, last: bool) -> list[tuple[np.ndarray, np.ndarray]]:
        idx = np.arange(len(y))
        classification = self.data.model_type != ModelType.REGRESSION
        if self.folds(len(y), last) > 1:
            if classification and self._stratifiable(y, CV_FOLDS):
                return list(StratifiedKFold(CV_FOLDS, shuffle=True, random_state=self.seed).split(idx, y))
            return list(KFold(CV_FOLDS, shuffle=True, random_state=self.seed).split(idx))
        return [split_rows(len(y), self._classes(y), self.seed, test_size=0.2)]

    def _stratifiable(self, y: np.ndarray, per_class: int = 2) -> bool:
        return self.data.model_type != ModelType.REGRESSION and bool(np.bincount(y).min() >= per_class)

    def _classes(self, y: np.ndarray) -> np.ndarray | None:
        return None if self.data.model_type == ModelType.REGRESSION else y


class FanOut(Protocol):
    """Validates a rung's configs somewhere else (a Dask cluster), as ``Search`` would one after another."""

    def __call__(
        self, search: Search, configs: list[Config], rung: int, rows: int, last: bool, deadline: float
    ) -> list[Trial]: ...


class Search:
    """Successive halving: every config on a small subsample, the best third on three times the rows, and so on
    until the last rung validates on every training row (k-fold for small tables, a holdout for large ones)."""

    def __init__(
        self,
        data: TrainingData,
        recipe: dict[str, Any],
        *,
        seed: int,
        budget_s: float,
        n_jobs: int,
        families: list[str] | None,
        on_progress: Progress,
        max_configs: int = MAX_CONFIGS,
        fixed: list[tuple[str, Params]] | None = None,
        fan_out: FanOut | None = None,
    ) -> None:
        self.data = data
        self.validator = Validator(data, recipe, seed, n_jobs)
        self.fan_out = fan_out
        self.recipe = recipe
        self.seed = seed
        self.n_jobs = n_jobs
        self.metric = SELECTION_METRIC[data.model_type]
        self.sign = 1.0 if HIGHER_IS_BETTER[self.metric] else -1.0
        self.clock = _Clock(budget_s)
        self.on_progress = on_progress
        self.fixed = fixed
        self.families = families_for(len(data.X), [name for name, _ in fixed] if fixed else families)
        self.n_classes = len(data.classes or [])
        self.max_configs = max_configs
        self.trials: list[Trial] = []
        self.skipped: list[tuple[Config, int, str]] = []
        self.notes: list[str] = []
        self.cut_short: list[tuple[str, int, int]] = []  # (config, folds validated, folds planned)
        self._seconds_per_row: dict[str, float] = {}
        self._predict_s_per_row: dict[str, float] = {}
        self._model_s_per_row: dict[str, float] = {}

    # --- the plan ---

    def rung_rows(self) -> list[int]:
        n = len(self.data.X)
        rows = [min(n, max(FIRST_RUNG_ROWS[0], min(FIRST_RUNG_ROWS[1], n // ETA**2)))]
        while rows[-1] < n:
            grown = rows[-1] * ETA
            # A rung only a little smaller than the whole set would validate the same configs twice.
            rows.append(n if grown * 1.5 > n else grown)
        return rows

    def configs(self) -> list[Config]:
        """The defaults of every family first, then draws from each family's space, interleaved by weight."""
        model_type = self.data.model_type
        if self.fixed:  # the caller's own configurations, and nothing else
            return [
                Config(f"{name}#{i}", BY_NAME[name], BY_NAME[name].defaults(model_type) | params)
                for i, (name, params) in enumerate(self.fixed)
            ]
        rng = np.random.default_rng(self.seed)
        configs = [Config(f"{f.name}#0", f, f.defaults(model_type)) for f in self.families]
        draws = {f.name: 0 for f in self.families}
        log = model_type == ModelType.REGRESSION and worth_a_log(self.data.y)
        # The defaults of the families that win most, once more on the log scale; the sampled configs are drawn as
        # for any target (the log on half of them took the search's rows and time from plain configs, and on
        # bikeshare's counts its pick validated better and tested worse: 38.1 against 36.4 RMSE).
        for family in self.families if log else []:
            if family.name in LOG_FIRST:
                draws[family.name] += 1
                params = family.defaults(model_type) | {"target": LOG1P}
                configs.append(Config(f"{family.name}#{draws[family.name]}", family, params))
        while len(configs) < self.max_configs:
            for family in self.families:
                for _ in range(family.weight):
                    draws[family.name] += 1
                    key = f"{family.name}#{draws[family.name]}"
                    configs.append(Config(key, family, family.sample(rng, model_type)))
        return configs[: self.max_configs]

    # --- running it ---

    def run(self) -> list[Trial]:
        rungs = self.rung_rows()
        alive = self.configs()
        shares = _rung_shares(len(rungs))
        waiting: list[Config] = []
        for rung, rows in enumerate(rungs):
            last = rung == len(rungs) - 1
            deadline = self.clock.elapsed + shares[rung] * max(0.0, self.clock.left)
            # Time the planned finalists leave over goes to the next-best configs of the rung before.
            results = self._run_rung(
                alive + (waiting if last else []), rung, rows, last, deadline if not last else self.clock.budget_s
            )
            if not results or last:
                break
            results.sort(key=lambda t: -self.sign * t.score)
            keep = max(1, int(np.ceil(len(results) / ETA)))
            ranked = [t.config for t in results]
            alive = _diverse_top(ranked, keep)
            waiting = [c for c in ranked if c not in alive]
        return self.trials

    def _run_rung(self, configs: list[Config], rung: int, rows: int, last: bool, deadline: float) -> list[Trial]:
        if self.fan_out is not None:
            return self.fan_out(self, configs, rung, rows, last, deadline)
        results: list[Trial] = []
        for config in configs:
            reason = self.too_costly(config, rows, last, deadline)
            if reason:
                self.skipped.append((config, rung, reason))
                continue
            try:
                trial = self._validate(config, rung, rows, last, deadline)
            except ValueError as exc:  # a configuration these rows cannot fit (more neighbours than rows, …)
                self.skipped.append((config, rung, f"failed: {str(exc)[:200]}"))
                continue
            results.append(trial)
            self.report(rung)
        return results

    def too_costly(self, config: Config, rows: int, last: bool, deadline: float) -> str | None:
        """Why ``config``, started now, cannot be validated on ``rows`` before ``deadline``, at its family's pace so
        far (or, for a family not timed yet, a guess from the others': a wide table makes one boosting fit outlast
        a short budget); None when it can. Until a first fit is timed, candidates run whatever they cost: the
        search needs one (on a cluster, the first of each of its threads)."""
        if not self._seconds_per_row:  # nothing timed yet
            return None
        per_row, guessed = self._pace(config)
        estimate = self.estimate(config, rows, last)
        # The final refit of the winner needs time too: keep what the most expensive candidate would take.
        reserve = per_row * len(self.data.X) if last else 0.0
        if self.clock.elapsed + estimate + reserve > deadline:
            return f"would not finish within the time budget (about {estimate:.1f} s{', a guess' if guessed else ''})"
        return None

    def _pace(self, config: Config) -> tuple[float, bool]:
        """Seconds per fitted row of the config's family, and whether that is a guess (no fit of it timed yet)."""
        per_row = self._seconds_per_row.get(config.family.name)
        if per_row is not None:
            return per_row, False
        return (self._guess_per_row(config.family), True) if self._seconds_per_row else (0.0, True)

    def estimate(self, config: Config, rows: int, last: bool) -> float:
        """Seconds to validate ``config`` on ``rows``, at its family's pace so far (0 before anything was timed)."""
        return self._pace(config)[0] * rows * self.validator.folds(rows, last)

    def wall_deadline(self, deadline: float) -> float:
        """The search's ``deadline`` (seconds into the search) as a time.time() instant."""
        return time.time() + deadline - self.clock.elapsed

    def _guess_per_row(self, family: Family) -> float:
        """Seconds per fitted row of a family not timed yet: the timed families' pace scaled by the families'
        relative costs (the least of those guesses, so that a family is not left out on a guess alone)."""
        return min(
            per_row * family.relative_cost / BY_NAME[name].relative_cost
            for name, per_row in self._seconds_per_row.items()
        )

    def _validate(self, config: Config, rung: int, rows: int, last: bool, deadline: float) -> Trial:
        return self.noted(self.validator.run(config, rung, rows, last, self.wall_deadline(deadline)))

    def noted(self, validated: Validated) -> Trial:
        """A validation's trial, its family's pace taken in (one after another, in the configs' order)."""
        self.learn_pace(validated)
        return self.take(validated)

    def learn_pace(self, validated: Validated) -> None:
        """What a validation tells of its family's pace at fitting and predicting."""
        trial = validated.trial
        family = trial.config.family.name
        pace = trial.fit_s / max(1, validated.fitted_rows)
        self._seconds_per_row[family] = max(self._seconds_per_row.get(family, 0.0) * 0.5, pace)
        validated_rows = max(1, validated.validated_rows)
        self._predict_s_per_row[family] = trial.predict_s / validated_rows
        self._model_s_per_row[family] = validated.model_s / validated_rows

    def take(self, validated: Validated) -> Trial:
        """The validation's trial, added to the search's (noting a validation the budget cut short)."""
        trial = validated.trial
        if trial.folds < validated.planned_folds:
            self.cut_short.append((trial.config.key, trial.folds, validated.planned_folds))
        self.trials.append(trial)
        return trial

    def refit_estimate(self, configs: list[Config]) -> float:
        """Seconds to refit ``configs`` on every training row, at their families' pace in the search."""
        return sum(self._seconds_per_row.get(c.family.name, 0.0) for c in configs) * len(self.data.X)

    def predict_estimate(self, configs: list[Config]) -> float:
        """Seconds per row that ``configs`` (one, or an ensemble's members) take to predict."""
        return sum(self._predict_s_per_row.get(c.family.name, 0.0) for c in configs)

    def model_estimate(self, configs: list[Config]) -> float:
        """Seconds per row that the models of ``configs`` take on features already computed: what sets one
        option's cost to predict apart from another's (the features are the same columns for all; timed through
        sklearn's transformers, they would hide a k-NN's cost behind a linear model's)."""
        return sum(self._model_s_per_row.get(c.family.name, 0.0) for c in configs)

    def _subsample(self, rows: int) -> tuple[Any, np.ndarray]:
        return self.validator.subsample(rows)

    def report(self, rung: int) -> None:
        best = max(self.trials, key=lambda t: self.sign * t.score)
        fraction = min(0.99, self.clock.elapsed / max(self.clock.budget_s, 1e-9))
        self.on_progress(
            fraction,
            f"{len(self.trials)} candidates validated (rung {rung + 1}); best {self.metric} "
            f"{best.score:.4f} ({best.config.key})",
        )


# The families whose defaults are tried on the log scale too, when the target is skewed: the ones that win most.
LOG_FIRST = ("hist_gradient_boosting", "linear")


def _rung_shares(n_rungs: int) -> list[float]:
    """The share of the time left that each rung may use: the last rung gets whatever remains."""
    if n_rungs == 1:
        return [1.0]
    return [0.35] + [0.5] * (n_rungs - 2) + [1.0]


def _diverse_top(configs: list[Config], keep: int) -> list[Config]:
    """The best ``keep`` configs, but the best of every family survives one rung more, so that the last rung
    can still build an ensemble of different families."""
    chosen = configs[:keep]
    for config in configs[keep:]:
        if config.family.name not in {c.family.name for c in chosen} and len(chosen) < keep + 2:
            chosen.append(config)
    return chosen


def train(
    data: TrainingData,
    recipe: dict[str, Any],
    *,
    seed: int,
    budget_s: float,
    n_jobs: int = 1,
    families: list[str] | None = None,
    on_progress: Progress | None = None,
    max_configs: int = MAX_CONFIGS,
    fixed: list[tuple[str, Params]] | None = None,
    fan_out: FanOut | None = None,
) -> Outcome:
    """Search, select (a single config or a soft-voting ensemble), and refit the winner on every row of ``data``;
    with ``fan_out``, each rung's validations run there (a Dask cluster), the refit here."""
    search = Search(
        data,
        recipe,
        seed=seed,
        budget_s=budget_s,
        n_jobs=n_jobs,
        families=families,
        on_progress=on_progress or (lambda f, m: None),
        max_configs=max_configs,
        fixed=fixed,
        fan_out=fan_out,
    )
    trials = search.run()
    if not trials:
        raise _nothing_trained(search)
    final = _final_trials(trials, search.sign)
    options = _options(search, final)
    choice = select(options, search.sign, search.notes)
    if len(choice.members) > 1 and not _refit_fits(search, list(choice.members), _best_single(options, search)):
        choice = select([o for o in options if len(o.members) == 1], search.sign, search.notes)
    top = max(t.rung for t in trials)
    if any(m.rung < top for m in choice.members):
        [member] = choice.members
        search.notes.append(
            f"{member.config.key} was selected on its validation at rung {member.rung + 1} ({member.rows:,} rows), "
            "better than any candidate the budget let reach the last rung"
        )
    started = time.perf_counter()
    chosen = list(choice.members)
    if len(chosen) > 1:
        pipeline = _voting(chosen, search, choice.weights)
    else:
        pipeline = make_pipeline(chosen[0].config, data, recipe, seed, n_jobs)
    selected, selected_score = choice.key, choice.score
    X, y = _refit_rows(search, chosen)
    fit_quietly(pipeline, X, y)
    refit_s = time.perf_counter() - started
    finalists = {t.config.key for t in final}
    leaderboard = _leaderboard(search, selected, [o for o in options if len(o.members) > 1], finalists)
    search_s = search.clock.elapsed - refit_s
    notes = [*_left_out(search), *search.notes]
    pace = search.predict_estimate([t.config for t in chosen])
    return Outcome(pipeline, search.metric, selected_score, selected, leaderboard, search_s, refit_s, notes, pace)


def _refit_rows(search: Search, chosen: list[Trial]) -> tuple[Any, np.ndarray]:
    """The rows the winner is refit on: every training row, unless that would not end within the budget (a search
    that stopped at an early rung of a large table validated on a sample); then as many as the time left allows,
    never fewer than it was validated on, which the message names."""
    n = len(search.data.X)
    cost = search.refit_estimate([t.config for t in chosen])
    room = search.clock.left
    if cost <= room:
        return search.data.X, search.data.y
    rows = max(max(t.rows for t in chosen), int(n * max(0.0, room) / cost))
    if rows >= n:
        return search.data.X, search.data.y
    search.notes.append(f"the selected model was refit on a sample of {rows:,} of the {n:,} training rows")
    return search._subsample(rows)


def _refit_fits(search: Search, members: list[Trial], best: Trial) -> bool:
    """Whether refitting every member of the ensemble keeps the budget. The search kept back the time of one
    refit, so the best single config is refit whatever is left."""
    cost = search.refit_estimate([m.config for m in members])
    room = max(search.clock.left, search.refit_estimate([best.config]))
    if cost <= room:
        return True
    keys = ", ".join(m.config.key for m in members)
    search.notes.append(
        f"the ensemble of {keys}, which was selected, was not refit (about {cost:.1f} s, {max(0.0, room):.1f} s "
        f"were left); {best.config.key} alone was"
    )
    return False


def _left_out(search: Search) -> list[str]:
    """What the message says the budget left out of the search: candidates never validated (those that failed to
    fit are the leaderboard's to tell), and validations cut short."""
    validated = {t.config.key for t in search.trials}
    left_out = {c.key for c, _, reason in search.skipped if c.key not in validated and not reason.startswith("failed")}
    notes = []
    if left_out:
        notes.append(f"{len(left_out)} of {search.max_configs} candidates were left out of the search")
    if len(search.cut_short) == 1:
        key, done, planned = search.cut_short[0]
        notes.append(f"{key} was validated on {done} of its {planned} folds")
    elif search.cut_short:
        notes.append(f"{len(search.cut_short)} candidates were validated on fewer folds than planned (see 'folds')")
    return notes


def _nothing_trained(search: Search) -> MlsvcError:
    reasons = sorted({reason for _, _, reason in search.skipped})
    return MlsvcError(
        ErrorCode.INVALID_DATA,
        f"no candidate model could be fitted on these {len(search.data.X)} rows: {'; '.join(reasons[:3])}",
    )


def _final_trials(trials: list[Trial], sign: float = 1.0) -> list[Trial]:
    """The trials at the top rung reached by anyone. When the budget let only one family reach it (a slow family
    kept off on a busy machine), also the other families' configs of the rung below that validated better there
    than the best finalist: a config scores lower on fewer rows, so one that still beats the finalists is better,
    and leaving it out selects a worse model (a linear one at twice the boosted trees' RMSE, seen on diamonds)."""
    top = max(t.rung for t in trials)
    final = [t for t in trials if t.rung == top]
    if top == 0 or len({t.config.family.name for t in final}) > 1:
        # Several families reached the last rung: its validations, on the most rows, decide. A rung below scores
        # on a small holdout, and a lucky one would beat them on noise (seen on digits and car_choice).
        return final
    bar = max(sign * t.score for t in final)
    below = [t for t in trials if t.rung == top - 1 and t.config.family.name != final[0].config.family.name]
    return final + [t for t in below if sign * t.score > bar]


def _options(search: Search, final: list[Trial]) -> list[Option]:
    """The best finalist of each family alone, and soft voting of every two or more of the best of up to three
    families, scored on the same out-of-fold predictions (nothing is fitted again)."""
    ranked = sorted(final, key=lambda t: -search.sign * t.score)
    best_of_family: list[Trial] = []
    for trial in ranked:
        if trial.config.family.name not in {m.config.family.name for m in best_of_family}:
            best_of_family.append(trial)
    options = [Option((t,), t.score, search.model_estimate([t.config])) for t in best_of_family]
    members = [t for t in best_of_family if t.output is not None][:ENSEMBLE_SIZE]
    for size in range(2, len(members) + 1):
        for group in itertools.combinations(members, size):
            y = search._subsample(group[0].rows)[1][group[0].output_idx]
            outputs = np.asarray([m.output for m in group])
            weights, score = ensemble_weights(search.data.model_type, y, outputs, search.sign)
            if min(weights) == 0:
                continue  # a member the blend does not use: the smaller group is an option of its own
            cost = search.model_estimate([m.config for m in group])
            options.append(Option(group, score, cost, weights))
    return options


ENSEMBLE_STEPS = 20  # greedy additions of a member to the blend: weights in twentieths


def ensemble_weights(
    model_type: ModelType, y: np.ndarray, outputs: np.ndarray, sign: float
) -> tuple[tuple[float, ...], float]:
    """Weights for blending the members' out-of-fold ``outputs`` (members first), and the blend's score: greedy
    ensemble selection with replacement (Caruana et al., 2004), each step adding the member whose extra share
    scores best on the selection metric; ties go to the equal blend's side, so without evidence the weights stay
    even. Every member starts with one share, so none is dropped on noise alone."""
    counts = np.ones(len(outputs))
    best = selection_score(model_type, y, _blend(outputs, counts))
    for _ in range(ENSEMBLE_STEPS - len(outputs)):
        tried = []
        for i in range(len(outputs)):
            grown = counts.copy()
            grown[i] += 1
            tried.append((sign * selection_score(model_type, y, _blend(outputs, grown)), -i))
        gain, minus_i = max(tried)
        if not gain > sign * best:
            break
        counts[-minus_i] += 1
        best = sign * gain
    weights = tuple(float(w) for w in counts / counts.sum())
    return weights, float(best)


def _blend(outputs: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return np.tensordot(counts / counts.sum(), outputs, axes=1)


def select(options: list[Option], sign: float, notes: list[str] | None = None) -> Option:
    """The best-scoring option that pays for its cost to predict: against every cheaper option it is at most
    SLOWER_TO_PREDICT times slower, or it validates at least MIN_RELATIVE_GAIN better. The cheapest option always
    qualifies. When the best-scoring one is passed over, ``notes`` says why."""
    by_score = sorted(options, key=lambda o: -sign * o.score)
    for option in by_score:
        cheaper = [o for o in options if o.model_s_per_row < option.model_s_per_row]
        passed_over = next((o for o in cheaper if not _pays_for(option, o, sign)), None)
        if passed_over is None:
            if option is not by_score[0] and notes is not None:
                notes.append(_passed_over_note(by_score[0], option))
            return option
    raise AssertionError("the cheapest option always pays for itself")  # pragma: no cover


def _pays_for(option: Option, cheaper: Option, sign: float) -> bool:
    if option.model_s_per_row <= SLOWER_TO_PREDICT * cheaper.model_s_per_row:
        return True
    gain = sign * (option.score - cheaper.score) / max(abs(cheaper.score), 1e-12)
    return gain >= MIN_RELATIVE_GAIN


def _passed_over_note(best: Option, chosen: Option) -> str:
    slower = best.model_s_per_row / max(chosen.model_s_per_row, 1e-12)
    return (
        f"{best.key} validated {best.score:.4f} but predicts {slower:.0f}x slower than {chosen.key} "
        f"({chosen.score:.4f}), which was selected: a model {SLOWER_TO_PREDICT:g}x slower to predict must validate "
        f"{MIN_RELATIVE_GAIN:.1%} better"
    )


def _best_single(options: list[Option], search: Search) -> Trial:
    return max((o for o in options if len(o.members) == 1), key=lambda o: search.sign * o.score).members[0]


def _voting(members: list[Trial], search: Search, weights: tuple[float, ...] | None = None) -> BaseEstimator:
    estimators = [
        (
            m.config.key.replace("#", "_"),
            make_pipeline(m.config, search.data, search.recipe, search.seed, search.n_jobs),
        )
        for m in members
    ]
    given = None if weights is None else list(weights)
    if search.data.model_type == ModelType.REGRESSION:
        return VotingRegressor(estimators, weights=given)
    return VotingClassifier(estimators, voting="soft", weights=given)


def _leaderboard(search: Search, selected: str, ensembles: list[Option], finalists: set[str]) -> list[dict[str, Any]]:
    """Every config at the highest rung it reached, and every ensemble of finalists, best first; then the ones the
    budget left out."""
    best_by_config: dict[str, Trial] = {}
    for trial in search.trials:
        if trial.config.key not in best_by_config or trial.rung >= best_by_config[trial.config.key].rung:
            best_by_config[trial.config.key] = trial
    top = max(t.rung for t in search.trials)
    # A finalist from the rung below (``_final_trials``) ranks with the finalists: it competed with them.
    rows = sorted(
        best_by_config.values(),
        key=lambda t: (-(top if t.config.key in finalists else t.rung), -search.sign * t.score),
    )
    board: list[dict[str, Any]] = [
        {
            "candidate": t.config.key,
            "family": t.config.family.name,
            "params": _plain(t.config.params),
            "validation_score": t.score,
            "validation_std": t.score_std,
            "rows": t.rows,
            "folds": t.folds,
            "rung": t.rung + 1,
            "fit_time_s": round(t.fit_s, 4),
            "predict_time_s": round(t.predict_s, 4),
            "model_us_per_row": round(search.model_estimate([t.config]) * 1e6, 3),
            "status": "finalist" if t.config.key in finalists else f"stopped after rung {t.rung + 1}",
            "selected": t.config.key == selected,
        }
        for t in rows
    ]
    for option in ensembles:
        members = option.members
        board.append(
            {
                "candidate": "ensemble",
                "family": "soft_voting",
                "params": {
                    "members": [m.config.key for m in members],
                    "weights": [round(w, 4) for w in option.weights or ()],
                },
                "validation_score": option.score,
                "validation_std": None,
                "rows": members[0].rows,
                "rung": top + 1,
                "fit_time_s": round(sum(m.fit_s for m in members), 4),
                "predict_time_s": round(sum(m.predict_s for m in members), 4),
                "model_us_per_row": round(option.model_s_per_row * 1e6, 3),
                "status": "finalist",
                "selected": option.key == selected,
            }
        )
    board.sort(
        key=lambda row: (
            -(top + 1 if row["status"] == "finalist" else row["rung"]),
            -search.sign * row["validation_score"],
        )
    )
    seen = set(best_by_config)
    for config, rung, reason in search.skipped:
        if config.key not in seen:
            seen.add(config.key)
            board.append(
                {
                    "candidate": config.key,
                    "family": config.family.name,
                    "params": _plain(config.params),
                    "validation_score": None,
                    "status": f"skipped at rung {rung + 1}: {reason}",
                    "selected": False,
                }
            )
    return board


def _plain(params: Params) -> Params:
    return {
        k: (v if isinstance(v, str | int | float | bool | list) or v is None else str(v)) for k, v in params.items()
    }
