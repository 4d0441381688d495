"""The durable job queue in the metadata store, the worker loop and the processes that run it."""
