"""`storage`: where conversation threads (LangGraph checkpoints: messages, pending approvals) are kept.

`sqlite` (default): one local file, for a single process. `postgres`: a PostgreSQL database shared by any number of
`assistant serve` replicas; the connection URL (which holds the password) is never written in the policy, only the
name of the environment variable that carries it. Its tables are created and upgraded by `assistant db migrate`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator, model_validator

from guards.policy.base import NonEmptyStr, PolicyModel

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_URL_ENV = "ASSISTANT_DATABASE_URL"


class StorageConfig(PolicyModel):
    backend: Literal["sqlite", "postgres"] = "sqlite"
    # sqlite: the database file (relative to the policy file's folder); None = <data dir>/threads.sqlite
    path: NonEmptyStr | None = None
    # postgres: the environment variable holding the URL (postgresql://user:password@host:5432/dbname)
    url_env: NonEmptyStr = DEFAULT_URL_ENV

    @field_validator("url_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not an environment variable name (letters, digits, _)")
        return value

    @model_validator(mode="after")
    def _path_is_sqlite_only(self) -> StorageConfig:
        if self.backend == "postgres" and self.path is not None:
            raise ValueError("storage.path is for backend: sqlite; postgres takes its URL from storage.url_env")
        return self


__all__ = ["DEFAULT_URL_ENV", "StorageConfig"]
