"""Real key backends for tests: a SoftHSM2 token of the test's own, AWS KMS on moto's server."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "246813579"


def softhsm_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str = "issuer") -> str:
    """A fresh SoftHSM2 token in ``tmp_path`` (its own SOFTHSM2_CONF) and its key URI."""
    root = tmp_path / "softhsm"
    (root / "tokens").mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label,
                    "--so-pin", "1357924680", "--pin", PIN], check=True, capture_output=True,
                   env={**os.environ, "SOFTHSM2_CONF": str(conf)})
    pin = root / "pin"
    pin.write_text(PIN + "\n")
    pin.chmod(0o600)
    return f"pkcs11:token={label}?module-path={SOFTHSM_MODULE}&pin-source=file:{pin}"


@pytest.fixture(scope="session")
def moto_kms() -> Iterator[str]:
    """moto's AWS server on a free loopback port: KMS offline, with real signatures."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def kms_uri(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The key URI of moto's KMS, with the dummy credentials it accepts."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return f"awskms:region=us-east-1?endpoint-url={endpoint}"
