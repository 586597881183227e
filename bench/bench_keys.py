"""Key backends: statement signatures per second through a SoftHSM2 token against file keys
(the same algorithm, the same Signer), and the cost of opening a scrypt-encrypted key file."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from issuer.core.authority import Authority, init_issuer
from issuer.keys.backends.file import Passphrase, read_private

from .common import Row, best_rate

N = 300
PAYLOAD = b'{"iss":"https://issuer.example.com","software_id":"bench","pad":"' + b"x" * 900 + b'"}'


def _token(root: Path) -> str:
    (root / "tokens").mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "bench", "--so-pin",
                    "12345678", "--pin", "87654321"], check=True, capture_output=True)
    pin = root / "pin"
    pin.write_text("87654321")
    pin.chmod(0o600)
    return ("pkcs11:token=bench?module-path=/usr/lib/softhsm/libsofthsm2.so"
            f"&pin-source=file:{pin}")


def _rate(auth: Authority) -> float:
    signer = auth.keystore.signer()

    def sign() -> int:
        for _ in range(N):
            signer.sign(PAYLOAD)
        return N

    return best_rate(sign)


def run() -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        uri = _token(root / "softhsm")
        for alg in ("ES256", "Ed25519"):
            hsm = init_issuer(root / f"hsm-{alg}", issuer="https://issuer.example.com", alg=alg,
                              actor="bench", env={}, key_backend=uri)
            files = init_issuer(root / f"file-{alg}", issuer="https://issuer.example.com",
                                alg=alg, actor="bench", env={})
            ours, baseline = _rate(hsm), _rate(files)
            hsm.close()
            files.close()
            rows.append(Row(f"sign {alg}, SoftHSM2 token vs file key", f"{ours:,.0f}/s",
                            f"{baseline:,.0f}/s", ours / baseline, "-", None))
        passphrase = "a long passphrase for the benchmark"
        enc = init_issuer(root / "encrypted", issuer="https://issuer.example.com", alg="ES256",
                          actor="bench", env={"ISSUER_KEY_PASSPHRASE": passphrase})
        path = enc.config.keys_dir / enc.keystore.active().ref
        enc.close()
        started = time.perf_counter()
        read_private(path, Passphrase.of(passphrase))
        scrypt = time.perf_counter() - started
        rows.append(Row("open a scrypt-encrypted key file (once per process)",
                        f"{scrypt * 1000:,.0f} ms", "-", 1.0, "-", None))
    return rows
