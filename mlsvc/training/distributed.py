"""A search's rungs fanned out to a Dask cluster: the configs of each successive-halving rung are validated at once
on the Dask workers (one fit a worker thread) by the same ``Validator`` the local search uses, then taken in, in
the configs' order, so that the same seed gives the same trials, and the same leaderboard, as the local path. A
candidate is sent when a thread is free, if at the pace known so far it would end before the rung's deadline (as
the local search starts one only then), and each validation stops between folds at that deadline, on the wall
clock; until a first fit is timed, the first candidate of each thread runs whatever it costs."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

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
        from distributed import wait

        threads = self.threads()
        validator = self._scattered(search.validator)
        at = search.wall_deadline(deadline)
        waiting = list(enumerate(configs))
        running: dict[Any, int] = {}
        answers: dict[int, Validated] = {}
        try:
            while waiting or running:
                # As many as the cluster has threads, each let through as the local search would start it: at the
                # pace known so far, it must end before the rung's deadline.
                while waiting and len(running) < threads:
                    index, config = waiting.pop(0)
                    reason = search.too_costly(config, rows, last, deadline)
                    if reason:
                        search.skipped.append((config, rung, reason))
                        continue
                    future = self.client.submit(_validate, validator, config, rung, rows, last, at, pure=False)
                    running[future] = index
                if not running:
                    break
                with self.client.as_current():
                    done, _ = wait(list(running), return_when="FIRST_COMPLETED")
                for future in done:
                    index = running.pop(future)
                    answer = future.result()
                    if isinstance(answer, str):  # a configuration these rows cannot fit, skipped as locally
                        search.skipped.append((configs[index], rung, answer))
                        continue
                    search.learn_pace(answer)
                    answers[index] = answer
                search.on_progress(
                    min(0.99, search.clock.elapsed / max(search.clock.budget_s, 1e-9)),
                    f"rung {rung + 1}: {len(answers)} of {len(configs)} candidates validated on the cluster",
                )
        except BaseException:
            self.client.cancel(list(running))
            raise
        log.info("rung %d: %d candidates validated on the Dask cluster (%d threads)", rung + 1, len(answers), threads)
        results = [search.take(answers[i]) for i in sorted(answers)]  # in the configs' order, as locally
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
