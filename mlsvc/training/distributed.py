"""A search's rungs fanned out to a Dask cluster: the configs of each successive-halving rung are validated at once
on the Dask workers (one fit a worker thread) by the same ``Validator`` the local search uses, then taken in, in
the configs' order, so that the same seed gives the same trials, and the same leaderboard, as the local path. Which
configs a rung runs is decided before it starts, from the families' pace so far and the work queued ahead of each
on the cluster's threads; each validation stops between folds at the rung's deadline, on the wall clock."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from mlsvc.jobs.cluster import gather_in_order
from mlsvc.training.loop import Config, Search, Trial, Validated, Validator

log = logging.getLogger("mlsvc.training")


class ClusterFanOut:
    """The ``FanOut`` of one search on one Dask client: the search's data is sent to the cluster once."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._validator: Any = None  # the scattered Validator, once the first rung needs it

    def threads(self) -> int:
        workers = self.client.scheduler_info().get("workers", {})
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))

    def __call__(
        self, search: Search, configs: list[Config], rung: int, rows: int, last: bool, deadline: float
    ) -> list[Trial]:
        threads = self.threads()
        planned: list[Config] = []
        ahead = 0.0
        for config in configs:
            reason = search.too_costly(config, rows, last, deadline, ahead)
            if reason:
                search.skipped.append((config, rung, reason))
                continue
            planned.append(config)
            ahead += search.estimate(config, rows, last) / threads
        if not planned:
            return []
        log.info("rung %d: %d candidates validated on the Dask cluster (%d threads)", rung + 1, len(planned), threads)
        validator = self._scattered(search.validator)
        at = search.wall_deadline(deadline)
        futures = [self.client.submit(_validate, validator, c, rung, rows, last, at, pure=False) for c in planned]
        done = [0]

        def arrived(index: int, _: Validated | str) -> None:
            done[0] += 1
            fraction = min(0.99, search.clock.elapsed / max(search.clock.budget_s, 1e-9))
            search.on_progress(fraction, f"rung {rung + 1}: {done[0]} of {len(planned)} candidates validated")

        try:
            answers = gather_in_order(self.client, futures, arrived, lambda: None)
        except BaseException:
            self.client.cancel(futures)
            raise
        results: list[Trial] = []
        for config, answer in zip(planned, answers, strict=True):
            if isinstance(answer, str):  # a configuration these rows cannot fit, as the local search skips it
                search.skipped.append((config, rung, answer))
                continue
            trial = search.noted(answer)
            search.trials.append(trial)
            results.append(trial)
        if results:
            search.report(rung)
        return results

    def _scattered(self, validator: Validator) -> Any:
        if self._validator is None:
            # One thread a fit: the cluster's threads are the parallelism.
            self._validator = self.client.scatter(replace(validator, n_jobs=1), broadcast=False, hash=False)
        return self._validator


def _validate(validator: Validator, config: Config, rung: int, rows: int, last: bool, at: float) -> Validated | str:
    """On a Dask worker: one candidate's validation, or why these rows cannot fit it."""
    try:
        return validator.run(config, rung, rows, last, at)
    except ValueError as exc:
        return f"failed: {str(exc)[:200]}"
