"""Small versions of the benchmarks, for correctness under concurrency (not speed): group
commit, batch mint, a shared verifier across threads, and a full audit verify after them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from issuer.core.authority import Authority
from issuer.core.clock import FixedClock
from issuer.core.errors import InvalidRequest, IssuerError, NotFound
from issuer.core.statements import MintRequest
from issuer.log.tlog import verify_log
from issuer.service.batching import MintBatcher
from issuer.verifier.trust import StatementVerifier, TrustedIssuer
from tests.conftest import START, verified_statements


def test_group_commit_keeps_each_request_apart(auth: Authority) -> None:
    batcher = MintBatcher(auth)
    results: dict[int, object] = {}
    submitted = 0
    counting = threading.Lock()
    real_submit = batcher.submit

    def submit(*args: object) -> None:
        nonlocal submitted
        real_submit(*args)  # type: ignore[arg-type]
        with counting:
            submitted += 1

    batcher.submit = submit  # type: ignore[method-assign]

    def client(n: int) -> None:
        if n % 8 == 0:
            request = MintRequest("desktop-agent", {"software_version": "1", "scope": "x"})
        elif n % 8 == 1:
            request = MintRequest("no-such-template", {})
        else:
            request = MintRequest("desktop-agent", {"software_version": str(n)})
        try:
            results[n] = batcher.mint(request, principal=f"client-{n}", channel="http")
        except IssuerError as exc:
            results[n] = exc

    threads = [threading.Thread(target=client, args=(n,)) for n in range(24)]

    def wait_until(done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 30
        while not done():
            assert time.monotonic() < deadline
            time.sleep(0.01)

    # Hold the database: the writer takes one valid request alone and waits for the lock in its
    # transaction; the 23 that arrive meanwhile must all go into the next batch.
    with auth.audit.lock:
        threads[2].start()
        wait_until(lambda: submitted == 1 and batcher._queue.empty())  # the writer has it
        for t in threads[:2] + threads[3:]:
            t.start()
        wait_until(lambda: submitted == 24)
    for t in threads:
        t.join()
    batcher.stop()
    bad = {n: r for n, r in results.items() if isinstance(r, IssuerError)}
    assert sorted(bad) == [n for n in range(24) if n % 8 in (0, 1)]
    assert all(isinstance(r, InvalidRequest) for n, r in bad.items() if n % 8 == 0)
    assert all(isinstance(r, NotFound) for n, r in bad.items() if n % 8 == 1)
    good = [r for r in results.values() if not isinstance(r, IssuerError)]
    assert len(good) == 18 and len({r.jti for r in good}) == 18  # type: ignore[union-attr]
    records = {r.jti: r for r in auth.audit.statements()}
    for n, result in results.items():
        if not isinstance(result, IssuerError):
            assert records[result.jti].principal == f"client-{n}"  # type: ignore[union-attr]
    assert batcher.batches == 2  # 24 requests: the lone first one, then the other 23 together
    assert verify_log(auth.log).entries == auth.audit.next_index()
    assert verified_statements(auth) == 18


def test_a_failed_commit_fails_the_whole_group(auth: Authority,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from issuer.store.audit import AuditStore

    def broken(self: AuditStore, records: object, **kwargs: object) -> None:
        import sqlite3

        raise sqlite3.OperationalError("disk full")

    monkeypatch.setattr(AuditStore, "record_statements", broken)
    batcher = MintBatcher(auth)
    with pytest.raises(IssuerError, match="could not record the statement") as failed:
        batcher.mint(MintRequest("desktop-agent", {"software_version": "1"}), principal="p",
                     channel="http")
    assert "disk full" not in failed.value.description  # no exception text, no path
    assert str(auth.config.database) not in failed.value.description
    batcher.stop()
    monkeypatch.undo()
    assert auth.audit.count_statements() == 0


def test_a_failed_group_commit_retries_each_request_alone(
        auth: Authority, monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit that fails for the group (here: any group of more than one) must not fail the
    requests in it: each is retried alone, and all of them are recorded."""
    from issuer.store.audit import AuditStore

    real = AuditStore.record_statements

    def flaky(self: AuditStore, records: list[object], **kwargs: object) -> object:
        if len(records) > 1:
            import sqlite3

            raise sqlite3.OperationalError("database is locked")
        return real(self, records, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(AuditStore, "record_statements", flaky)
    batcher = MintBatcher(auth)
    outcomes: list[object] = []
    batch = [(MintRequest("desktop-agent", {"software_version": str(i)}), "p", "http",
              outcomes.append) for i in range(12)]
    batcher._commit(batch)
    assert len(outcomes) == 12 and all(not isinstance(o, BaseException) for o in outcomes)
    monkeypatch.undo()
    assert auth.audit.count_statements() == 12
    assert verified_statements(auth) == 12


def test_batch_of_a_thousand_then_verify(auth: Authority) -> None:
    results = auth.mint_many([MintRequest("mcp-connector", {"software_version": f"1.{i}"})
                              for i in range(1000)], principal="ci", channel="cli")
    assert len({r.jti for r in results}) == 1000
    assert [r.log_index for r in results] == list(range(results[0].log_index,
                                                        results[0].log_index + 1000))
    report = verify_log(auth.log)
    assert report.entries == auth.audit.next_index()
    assert verified_statements(auth) == 1000


def test_one_verifier_shared_by_threads(auth: Authority) -> None:
    tokens = [r.software_statement for r in auth.mint_many(
        [MintRequest("desktop-agent", {"software_version": str(i)}) for i in range(200)],
        principal="ci", channel="cli")]
    verifier = StatementVerifier(trusted=[TrustedIssuer(issuer="https://issuer.example.com",
                                                        jwks=auth.jwks(), check_status=False)],
                                 clock=FixedClock(START))
    errors: list[BaseException] = []

    def worker(chunk: list[str]) -> None:
        try:
            for token in chunk:
                assert verifier.verify(token).claims["iss"] == "https://issuer.example.com"
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(tokens[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_scale_small(home: Path) -> None:
    auth = Authority.from_config(home / "issuer.toml", env={}, clock=FixedClock(START))
    for _ in range(3):
        auth.mint_many([MintRequest("desktop-agent", {"software_version": "1"})] * 700,
                       principal="ci", channel="cli")
    for i in range(20):
        auth.mint(MintRequest("desktop-agent", {"software_version": str(i)}), principal="p",
                  channel="http")
    assert verify_log(auth.log).entries == auth.audit.next_index()
    assert verified_statements(auth) == 2120
    auth.close()


def test_a_group_wakes_the_event_loop_once(auth: Authority) -> None:
    """Async requests committed in one group are handed back with one wake-up of their event
    loop, each with its own outcome (a failing member fails alone)."""
    import asyncio

    batcher = MintBatcher(auth)
    wakeups = submitted = 0
    real_submit = batcher.submit

    def submit(*args: object) -> None:
        nonlocal submitted
        real_submit(*args)  # type: ignore[arg-type]
        submitted += 1

    batcher.submit = submit  # type: ignore[method-assign]

    async def main() -> list[object]:
        nonlocal wakeups
        loop = asyncio.get_running_loop()
        real = loop.call_soon_threadsafe

        def counting(*args: object, **kwargs: object) -> object:
            nonlocal wakeups
            wakeups += 1
            return real(*args, **kwargs)  # type: ignore[arg-type]

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        requests = [MintRequest("desktop-agent", {"software_version": str(n)}) if n != 5
                    else MintRequest("no-such-template", {}) for n in range(20)]
        # The writer takes what has arrived and waits for the database; the rest queue behind
        # it: two groups at most.
        with auth.audit.lock:
            tasks = [asyncio.ensure_future(batcher.mint_async(r, principal=f"c{n}",
                                                             channel="http"))
                     for n, r in enumerate(requests)]
            deadline = time.monotonic() + 30
            while submitted < 20:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    batcher.stop()
    assert isinstance(results[5], NotFound)
    good = [r for n, r in enumerate(results) if n != 5]
    assert len({r.jti for r in good}) == 19  # type: ignore[attr-defined]
    assert batcher.batches <= 2 and wakeups <= batcher.batches
