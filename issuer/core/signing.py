"""Encoding and signing a batch's payloads, in worker processes when the batch is large.

ECDSA signing in ``cryptography`` holds the GIL, so threads add no signing capacity; processes
do. For a large batch (``issuer mint --batch``) with a key in a file, worker processes are
forked from the minting process and inherit its loaded key in their copy of its memory: the
key is never serialised, written or sent, and it ends with them when the batch ends. Each
worker encodes payloads (canonical JSON, RFC 7519 section 7.1) and signs them; the minting
process keeps everything else: the checks before, and the records, the log entries and the
one transaction after (docs/performance.md, "Batch mint"). A key in an HSM or a KMS is never
forked: its session or client belongs to one process, and it signs in its own service.

Whatever goes wrong in a worker (an error, a crash, a kill) raises in the minting process
inside its transaction, so nothing of the batch is recorded or output.
"""

from __future__ import annotations

import collections
import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from issuer.core.errors import KeystoreError
from issuer.core.statements import encode_payload
from issuer.keys.keystore import Signer

#: Payloads per task sent to a worker: large enough that the hand-off costs little per
#: statement, small enough that the workers start signing at once.
TASK_SIZE = 250
#: Below this many statements a batch is signed in the minting process: forking the workers
#: costs more than it saves.
PARALLEL_MIN = 2000
#: Worker processes at most: beyond two, the minting process's own share (the inserts, the
#: log) is the limit.
MAX_WORKERS = 2
#: Tasks handed out ahead of the minting process: new ones go out only as it takes results,
#: so the window must outlast its pauses (writing a chunk of 1,000 records) or the workers
#: idle through them. About 2,500 payloads in flight at most (the window, and a task being
#: filled): a large batch is never all in memory.
AHEAD = 8

Payload = dict[str, Any]
Signed = tuple[bytes, str]  # the payload's bytes and the compact JWS over them

#: A worker's signer: set by :func:`_start_worker` in each forked worker (the minting process
#: hands it over as an argument of the fork, which copies it; nothing is pickled).
_SIGNER: Signer | None = None
#: ``prctl(PR_SET_PDEATHSIG, ...)``: Linux ends a process when its parent dies.
_PR_SET_PDEATHSIG = 1


def _start_worker(signer: Signer, parent: int) -> None:
    global _SIGNER
    _SIGNER = signer
    # Ctrl-C reaches the whole process group; the minting process decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker must not outlive the minting process with the key in its memory (the minting
    # process killed by the OOM killer or a signal would otherwise leave it waiting forever).
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0 or os.getppid() != parent:
        os._exit(1)  # the parent is already gone, or can't be watched: sign nothing


def _sign_task(payloads: list[Payload]) -> list[Signed]:
    assert _SIGNER is not None, "a signing worker runs only forked by sign_payloads"
    return [_sign(_SIGNER, payload) for payload in payloads]


def _sign(signer: Signer, payload: Payload) -> Signed:
    payload_json = encode_payload(payload)
    return payload_json, signer.sign(payload_json)


def default_workers() -> int:
    """Worker processes for a large batch on this machine: the cores this process may use but
    one (the minting process keeps one busy), at most ``MAX_WORKERS``; none on one core, and
    none off Linux (forking is unsafe on macOS, and only Linux ends a worker with its
    parent)."""
    if not sys.platform.startswith("linux"):
        return 0
    return max(0, min(MAX_WORKERS, len(os.sched_getaffinity(0)) - 1))


def sign_payloads(signer: Signer, payloads: Iterable[Payload], *, count: int,
                  workers: int = 0) -> Generator[Signed, None, None]:
    """``(payload bytes, compact JWS)`` for each payload, in order. With ``workers`` and at
    least ``PARALLEL_MIN`` payloads (``count``) and a key that may be forked, in that many
    worker processes, a few tasks ahead of the caller; otherwise here."""
    if workers < 1 or count < PARALLEL_MIN or not signer.forkable:
        for payload in payloads:
            yield _sign(signer, payload)
        return
    yield from _in_workers(signer, payloads, workers)


def _in_workers(signer: Signer, payloads: Iterable[Payload],
                workers: int) -> Generator[Signed, None, None]:
    # Whatever the parent has buffered would be written again by each worker when it exits.
    sys.stdout.flush()
    sys.stderr.flush()
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_start_worker, initargs=(signer, os.getpid()))
    try:
        pending: collections.deque[Future[list[Signed]]] = collections.deque()
        for task in _tasks(payloads):
            pending.append(pool.submit(_sign_task, task))
            if len(pending) >= AHEAD:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    except BrokenProcessPool:
        raise KeystoreError("a signing worker process ended before the batch was signed; "
                            "nothing was minted") from None
    finally:
        # Also when the minting process stops early: the queued tasks are dropped and the
        # workers end before the caller's transaction rolls back.
        pool.shutdown(wait=True, cancel_futures=True)


def _tasks(payloads: Iterable[Payload]) -> Iterator[list[Payload]]:
    task: list[Payload] = []
    for payload in payloads:
        task.append(payload)
        if len(task) == TASK_SIZE:
            yield task
            task = []
    if task:
        yield task
