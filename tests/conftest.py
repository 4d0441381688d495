"""Shared fixtures: the loopback S3 server, a running mlsvc server, and metadata stores on SQLite and PostgreSQL."""

pytest_plugins = ["tests.s3server", "tests.servers", "tests.stores"]
