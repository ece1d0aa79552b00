"""Issue 25 (6) on PostgreSQL: the approval claims table comes from `assistant db migrate` (a database without it is
an older schema), and exactly one of several deciders - replicas, each with its own connection - wins a pending call;
two replicas approving one call at once run it once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from assistant import storage
from assistant.agent.approval import APPROVE, StaleApproval
from assistant.api import Assistant
from tests.scale.test_postgres_threads import CALL_EMAIL, POLICY, SENT, amigrate, send_email


@pytest.fixture
def policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path / "home"))
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    return path


def replica(policy: Path, name: str, *answers: str) -> Assistant:
    script = policy.parent / f"{name}.jsonl"
    script.write_text("".join(json.dumps({"completion": a}) + "\n" for a in answers), encoding="utf-8")
    return Assistant.from_policy(policy, tools=[send_email], model=f"scripted:{script}")


async def test_claims_on_postgres_let_one_claimant_win(policy: Path, pg_url: str, monkeypatch) -> None:
    await amigrate(policy)
    target = storage.StorageTarget("postgres", url=pg_url)
    async with storage.open_checkpointer(target) as a, storage.open_checkpointer(target) as b:
        assert await storage.claim_approval(a, "t", "ck", "call-1")
        assert not await storage.claim_approval(b, "t", "ck", "call-1")
        await storage.release_approval(a, "t", "ck", "call-1")
        assert await storage.claim_approval(b, "t", "ck", "call-1")
        monkeypatch.setattr(storage, "CLAIM_STALE_S", -1.0)  # a crashed claimant's row expires
        assert await storage.claim_approval(a, "t", "ck", "call-1")


async def test_a_database_without_the_claims_table_must_be_migrated(policy: Path, pg_url: str) -> None:
    await amigrate(policy)
    target = storage.StorageTarget("postgres", url=pg_url)
    async with storage.open_checkpointer(target) as saver:
        await saver.conn.execute(f"DROP TABLE {storage.CLAIMS_TABLE}")
    line, current = await storage.schema_status(target)
    assert not current and "assistant db migrate" in line
    assert "migrated" in await storage.migrate(target)
    assert (await storage.schema_status(target))[1]


async def test_two_replicas_approving_one_call_at_once_run_it_once(policy: Path, pg_url: str) -> None:
    await amigrate(policy)
    SENT.clear()
    paused = await replica(policy, "p", CALL_EMAIL).arun("Email Bob hi", thread="t-race")
    call_id = paused.pending_approval.call_id
    a, b = replica(policy, "a", "Sent by a.<|eot_id|>"), replica(policy, "b", "Sent by b.<|eot_id|>")
    outcomes = await asyncio.gather(a.aresume("t-race", APPROVE, call_id=call_id),
                                    b.aresume("t-race", APPROVE, call_id=call_id), return_exceptions=True)
    assert sorted(type(o).__name__ for o in outcomes) == ["Result", "StaleApproval"], outcomes
    assert SENT == [{"to": "bob@example.test", "body": "hi"}]  # exactly once
    with pytest.raises(StaleApproval):
        await a.aresume("t-race", APPROVE, call_id=call_id)
