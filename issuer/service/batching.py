"""Group commit for the HTTP service: one writer, many waiting requests, one fsync per batch.

Every mint must be durably recorded before its response is sent. Committing each one alone
costs a transaction, a signed log checkpoint and an fsync per request; under concurrent load
the writer instead takes every request that is waiting and records them in one transaction
(:meth:`issuer.core.authority.Authority.mint_group`). A request that fails its own checks fails
alone; a failed commit fails the whole batch, and nothing of it is recorded. No request waits
for more than the batch in progress plus its own.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future

from issuer.core.authority import Authority
from issuer.core.errors import AuditUnavailable, IssuerError
from issuer.core.statements import MintRequest, MintResult

LOG = logging.getLogger("issuer.service")

Done = Callable[[MintResult | BaseException], None]
_Item = tuple[MintRequest, str, str, Done]


class MintBatcher:
    """Submits mints to a single writer thread that commits them in groups."""

    def __init__(self, authority: Authority, max_batch: int = 256, timeout: float = 60.0) -> None:
        self.authority = authority
        self.max_batch = max_batch
        self.timeout = timeout
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0  # how many transactions the writer committed (for tests and logs)
        self._wakers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWaker] = \
            weakref.WeakKeyDictionary()

    def submit(self, request: MintRequest, principal: str, channel: str, done: Done) -> None:
        """Queue one mint; ``done`` gets its result or error, on the writer thread, after the
        batch it belongs to has committed (or failed)."""
        self._start()
        self._queue.put((request, principal, channel, done))

    def mint(self, request: MintRequest, *, principal: str, channel: str) -> MintResult:
        """Mint one statement from a thread; returns once its batch has committed."""
        future: Future[MintResult] = Future()
        self.submit(request, principal, channel, lambda outcome: (
            future.set_exception(outcome) if isinstance(outcome, BaseException)
            else future.set_result(outcome)))
        try:
            return future.result(timeout=self.timeout)
        except TimeoutError:
            raise AuditUnavailable("the audit writer did not answer in time; the statement may "
                                   "or may not have been recorded") from None

    async def mint_async(self, request: MintRequest, *, principal: str,
                         channel: str) -> MintResult:
        """Mint one statement from the event loop, without a worker thread per request."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[MintResult] = loop.create_future()
        with self._lock:
            wake = self._wakers.get(loop)
            if wake is None:
                wake = self._wakers[loop] = _LoopWaker(loop)
        self.submit(request, principal, channel, lambda outcome: wake.settle(future, outcome))
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            raise AuditUnavailable("the audit writer did not answer in time; the statement may "
                                   "or may not have been recorded") from None

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="issuer-writer",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[_Item]) -> None:
        try:
            outcomes = self.authority.mint_group([(r, p, c) for r, p, c, _ in batch])
        except Exception as exc:  # the transaction failed: nothing of the batch exists
            if len(batch) > 1:
                # One request's failure must not fail the others: each is tried alone.
                LOG.warning("group commit of %d mints failed (%s); retrying each alone",
                            len(batch), type(exc).__name__)
                for item in batch:
                    self._commit([item])
                return
            LOG.error("mint failed", exc_info=exc)
            # The description reaches the caller: never the exception's own text or a path.
            error = exc if isinstance(exc, IssuerError) and not isinstance(
                exc, AuditUnavailable) else AuditUnavailable(
                "the audit store could not record the statement; nothing was issued")
            batch[0][3](error)
            self._wake_loops()
            return
        self.batches += 1
        for (*_, done), outcome in zip(batch, outcomes):
            done(outcome)
        self._wake_loops()

    def _wake_loops(self) -> None:
        """The group's outcomes are all handed out: one wake-up per waiting event loop."""
        with self._lock:
            wakers = list(self._wakers.values())
        for waker in wakers:
            waker.wake()


class _LoopWaker:
    """Hands a committed group's outcomes to an event loop with one wake-up per group: the
    writer queues each outcome (:meth:`settle`), then wakes the loop once when the whole group
    is handed out (:meth:`wake`), and the loop settles them all in one callback (a
    ``call_soon_threadsafe`` per request would write the loop's self-pipe and wake it once
    per statement)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # the batcher's map of wakers must not keep loops alive
        self._lock = threading.Lock()
        self._pending: list[tuple[asyncio.Future[MintResult], MintResult | BaseException]] = []

    def settle(self, future: asyncio.Future[MintResult],
               outcome: MintResult | BaseException) -> None:
        """Called on the writer thread for each member of a group."""
        with self._lock:
            self._pending.append((future, outcome))

    def wake(self) -> None:
        """Called on the writer thread once the group is handed out."""
        with self._lock:
            if not self._pending:
                return
        loop = self._loop()
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop was closed: nobody is waiting any more
                pass

    def _drain(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for future, outcome in pending:
            if future.done():  # its request gave up waiting
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
