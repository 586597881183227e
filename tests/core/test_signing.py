"""A large batch signed in forked worker processes: the same statements, in order, every one
recorded and verifiable by an outside verifier; a worker that dies leaves nothing minted; a key
that may not be forked is never handed to a worker."""

from __future__ import annotations

import json
import multiprocessing
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from issuer.core import checks
from issuer.core.authority import Authority
from issuer.core.encoding import b64url_decode, canonical_json
from issuer.core.errors import KeystoreError
from issuer.core.signing import PARALLEL_MIN, sign_payloads
from issuer.core.statements import MintRequest
from issuer.keys.backends import BackendKey
from issuer.keys.backends.jws import public_jwk
from issuer.keys.keystore import Signer
from tests.conftest import Cli

BIG = PARALLEL_MIN + 101  # above the threshold, and not a whole number of tasks


def requests(n: int) -> list[MintRequest]:
    return [MintRequest("desktop-agent", {"software_version": f"1.{i}"}) for i in range(n)]


def verify_outside(auth: Authority, token: str) -> dict[str, object]:
    """PyJWT, with the issuer's published key: what an authorization server does."""
    jwk = next(k for k in auth.jwks()["keys"] if k["kid"] == pyjwt.get_unverified_header(
        token)["kid"])
    key = pyjwt.PyJWK(jwk).key
    return pyjwt.decode(token, key, algorithms=["ES256"], options={"verify_exp": False,
                                                                   "verify_iat": False})


def test_a_large_batch_is_signed_in_workers_in_order_and_every_statement_verifies(
        auth: Authority) -> None:
    workers_seen: list[int] = []

    def progress(n: int) -> None:
        workers_seen.append(len(multiprocessing.active_children()))

    results = auth.mint_many(requests(BIG), principal="a", channel="cli", workers=2,
                             progress=progress)
    assert max(workers_seen) >= 1, "the batch was not signed in worker processes"
    assert multiprocessing.active_children() == []  # the workers ended with the batch
    assert [r.log_index for r in results] == sorted(r.log_index for r in results)
    for i, result in enumerate(results):
        if i % 97 and i != BIG - 1:
            continue  # a sample: PyJWT's own verification is the slow part of this test
        claims = verify_outside(auth, result.software_statement)
        assert claims["software_version"] == f"1.{i}" and claims["jti"] == result.jti
        record = auth.audit.statement(result.jti)
        assert record.software_statement == result.software_statement
        # The record's claims are the signed payload's bytes, not an encoding made apart.
        signed = b64url_decode(result.software_statement.split(".")[1])
        assert canonical_json(record.claims) == signed
    assert auth.audit.count_statements() == BIG
    report = checks.audit_verify(auth)
    assert report.ok, report.problems()


def test_a_small_batch_is_signed_here(auth: Authority) -> None:
    workers_seen: list[int] = []
    auth.mint_many(requests(50), principal="a", channel="cli", workers=2,
                   progress=lambda n: workers_seen.append(len(
                       multiprocessing.active_children())))
    assert workers_seen and max(workers_seen) == 0


def test_a_killed_worker_leaves_nothing_minted(auth: Authority) -> None:
    """The OOM killer (or anyone) ends a signing worker mid-batch: the batch fails with a
    one-line error, nothing of it is recorded, and the log goes on where it was."""
    before = (auth.audit.count_statements(), auth.log.size())

    def kill_a_worker(n: int) -> None:
        children = multiprocessing.active_children()
        if children and not killed:
            os.kill(children[0].pid, signal.SIGKILL)  # type: ignore[arg-type]
            killed.append(children[0].pid)

    killed: list[int | None] = []
    with pytest.raises(KeystoreError, match="signing worker process ended"):
        auth.mint_many(requests(BIG), principal="a", channel="cli", workers=2,
                       progress=kill_a_worker)
    assert killed
    assert (auth.audit.count_statements(), auth.log.size()) == before
    assert multiprocessing.active_children() == []
    results = auth.mint_many(requests(BIG), principal="a", channel="cli", workers=2)
    assert results[0].log_index >= before[1] and len(results) == BIG
    assert checks.audit_verify(auth).ok


def test_ctrl_c_reaching_the_workers_does_not_break_the_batch(auth: Authority) -> None:
    """Ctrl-C goes to the whole process group; the workers leave it to the minting process
    (which may be past the point of no return, committing the batch)."""
    sent: list[int] = []

    def interrupt_workers(n: int) -> None:
        if not sent:
            for child in multiprocessing.active_children():
                os.kill(child.pid, signal.SIGINT)  # type: ignore[arg-type]
                sent.append(1)

    # One worker: the first result back means it has set up its signal handling.
    results = auth.mint_many(requests(BIG), principal="a", channel="cli", workers=1,
                             progress=interrupt_workers)
    assert sent and len(results) == BIG == auth.audit.count_statements()


def test_stopping_mid_batch_ends_the_workers_and_records_nothing(auth: Authority) -> None:
    """Ctrl-C in the minting process while the workers sign: the queued tasks are dropped,
    the workers end, the transaction rolls back."""
    before = (auth.audit.count_statements(), auth.log.size())

    def interrupted(n: int, seen: list[int] = []) -> None:  # noqa: B006 (a counter)
        seen.append(n)
        if len(seen) == 300:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        auth.mint_many(requests(BIG), principal="a", channel="cli", workers=2,
                       progress=interrupted)
    assert multiprocessing.active_children() == []
    assert (auth.audit.count_statements(), auth.log.size()) == before


def test_the_workers_end_when_the_minting_process_is_killed(home: Path) -> None:
    """The minting process killed mid-batch (the OOM killer picks the largest process): its
    workers, which hold the key, must not live on waiting for work."""
    script = f"""
import multiprocessing, os, signal
from pathlib import Path
from issuer.core.authority import Authority
from issuer.core.statements import MintRequest
auth = Authority.from_config(Path({str(home / "issuer.toml")!r}), env={{}})
def progress(n):
    workers = multiprocessing.active_children()
    if workers:
        print(" ".join(str(w.pid) for w in workers), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
auth.mint_many([MintRequest("desktop-agent", {{"software_version": str(i)}})
                for i in range({BIG})], principal="a", channel="cli", workers=2,
               progress=progress)
"""
    # Files, not pipes: live workers would hold a pipe open and stall the run.
    printed, errors = home / "workers", home / "errors"
    with printed.open("w") as out, errors.open("w") as err:
        done = subprocess.run([sys.executable, "-c", script], stdout=out, stderr=err,
                              timeout=120)
    assert done.returncode == -signal.SIGKILL, errors.read_text()
    pids = [int(pid) for pid in printed.read_text().split()]
    assert pids
    for pid in pids:
        try:
            exited = os.pidfd_open(pid)
        except ProcessLookupError:
            continue  # gone already
        try:  # readable once the process has ended: waits on that, not on a timer
            assert select.select([exited], [], [], 30)[0], f"worker {pid} outlived its parent"
        finally:
            os.close(exited)


class _ForkableFileKey(BackendKey):
    """A real Ed25519 key held in memory like a file key, noting which process signs."""

    forkable = True

    def __init__(self, signed_by: Path) -> None:
        self.private = ed25519.Ed25519PrivateKey.generate()
        self.signed_by = signed_by

    def public_jwk(self) -> dict[str, object]:
        return public_jwk(self.private.public_key())

    def sign(self, signing_input: bytes) -> bytes:
        with self.signed_by.open("a") as out:
            out.write(f"{os.getpid()}\n")
        return self.private.sign(signing_input)


def test_the_signatures_are_made_in_the_workers(tmp_path: Path) -> None:
    key = _ForkableFileKey(tmp_path / "signed-by")
    signer = Signer("k", "Ed25519", key)
    payloads = [{"n": i} for i in range(PARALLEL_MIN)]
    signed = list(sign_payloads(signer, payloads, count=len(payloads), workers=2))
    signers = {int(pid) for pid in (tmp_path / "signed-by").read_text().split()}
    assert os.getpid() not in signers and len(signers) >= 1
    assert [json.loads(body)["n"] for body, _ in signed] == list(range(PARALLEL_MIN))
    for body, token in signed[::199]:
        signing_input, _, signature = token.rpartition(".")
        key.private.public_key().verify(b64url_decode(signature), signing_input.encode())
    # ECDSA and Ed25519 per process: no two statements share a signature.
    assert len({token.rpartition(".")[2] for _, token in signed}) == PARALLEL_MIN


class _ProcessBoundKey(BackendKey):
    """A key that, like a PKCS#11 session or a KMS client, belongs to one process."""

    def __init__(self) -> None:
        self.private = ed25519.Ed25519PrivateKey.generate()
        self.signed_in: set[int] = set()

    def public_jwk(self) -> dict[str, object]:
        return public_jwk(self.private.public_key())

    def sign(self, signing_input: bytes) -> bytes:
        self.signed_in.add(os.getpid())
        return self.private.sign(signing_input)


def test_a_key_that_may_not_be_forked_signs_in_its_own_process() -> None:
    key = _ProcessBoundKey()
    signer = Signer("k", "Ed25519", key)
    assert not signer.forkable
    payloads = [{"n": i} for i in range(PARALLEL_MIN)]
    signed = list(sign_payloads(signer, payloads, count=len(payloads), workers=2))
    assert key.signed_in == {os.getpid()}
    assert [json.loads(body)["n"] for body, _ in signed] == list(range(PARALLEL_MIN))
    body, token = signed[7]
    signing_input, _, signature = token.rpartition(".")
    key.private.public_key().verify(b64url_decode(signature), signing_input.encode())
    assert b64url_decode(signing_input.split(".")[1]) == body == b'{"n":7}'


def test_mint_batch_cli_signs_a_large_file_in_workers(cli: Cli, tmp_path: Path) -> None:
    batch = tmp_path / "batch.jsonl"
    batch.write_text("".join(json.dumps({"template": "desktop-agent", "claims": {
        "software_version": f"2.{i}"}}) + "\n" for i in range(BIG)))
    out = tmp_path / "out.jsonl"
    result = cli("mint", "--batch", str(batch), "--json", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == BIG
    assert [json.loads(b64url_decode(line["software_statement"].split(".")[1]))[
        "software_version"] for line in lines[:3]] == ["2.0", "2.1", "2.2"]
