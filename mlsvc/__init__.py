"""mlsvc: a self-hosted machine-learning prediction service. ``mlsvc.Client`` and ``mlsvc.AsyncClient`` are the SDK."""

from typing import Any

__all__ = ["AsyncClient", "Client", "choose_threshold"]


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that the server and workers do not import the SDK's dependencies.
    if name in __all__:
        from mlsvc import client

        return getattr(client, name)
    raise AttributeError(f"module 'mlsvc' has no attribute {name!r}")
