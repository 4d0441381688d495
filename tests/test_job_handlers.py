"""The one table of job kinds: every kind the queue knows has a handler that imports, and old rows still run."""

from __future__ import annotations

import inspect

import pytest

from mlsvc.jobs.handlers import HANDLERS, kind_of, load_handler
from mlsvc.metadata import RESOURCE_OF_JOB


def test_every_job_kind_has_a_handler_and_every_handler_a_resource() -> None:
    assert set(HANDLERS) == set(RESOURCE_OF_JOB)


@pytest.mark.parametrize("kind", sorted(HANDLERS))
def test_each_handler_is_a_run_of_one_context(kind: str) -> None:
    handler = load_handler(kind)
    assert handler.__name__ == "run" and list(inspect.signature(handler).parameters) == ["ctx"]


def test_a_recommendation_model_queued_as_model_train_runs_the_recommender_job() -> None:
    assert kind_of("model.train", {"model_type": "RECOMMENDATION"}) == "recommender.train"
    assert kind_of("model.train", {"model_type": "BINARY"}) == "model.train"
    assert kind_of("model.train", {"model_type": None}) == "model.train"  # inferred from the data at training
    assert kind_of("recommender.train", {"model_type": "RECOMMENDATION"}) == "recommender.train"
