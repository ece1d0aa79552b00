"""Fixtures for the scale-out tests: one throwaway PostgreSQL cluster per test session, a fresh database per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.scale.pg_cluster import Cluster, PostgresMissing, start_cluster

URL_ENV = "ASSISTANT_TEST_DATABASE_URL"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    try:
        cluster = start_cluster()
    except PostgresMissing as exc:
        pytest.fail(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new empty database; its URL is also in $ASSISTANT_TEST_DATABASE_URL (the policies' storage.url_env)."""
    url = pg_cluster.create_database(f"t_{uuid.uuid4().hex[:12]}")
    monkeypatch.setenv(URL_ENV, url)
    return url
