"""The verifier-only install an authorization server runs: the wheel, built from this checkout,
installed into a fresh venv beside nothing but the verifier's own dependencies, verifies a
statement and loads the Authlib integration without FastAPI, uvicorn, SQLAlchemy or click.

Offline: the wheel is built without build isolation, and the dependencies are copied from this
environment's installed distributions (their recorded files), never downloaded."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from issuer.core.authority import Authority
from issuer.core.statements import MintRequest

ROOT = Path(__file__).resolve().parents[2]
ISSUER_ONLY = {"click", "fastapi", "uvicorn", "sqlalchemy"}


def requirements(dist: str, extras: tuple[str, ...] = ()) -> list[str]:
    """Names ``dist`` needs on this interpreter (with ``extras``)."""
    names = []
    for text in metadata.requires(dist) or []:
        req = Requirement(text)
        env_ok = req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("",) + extras)
        if env_ok:
            names.append(req.name)
    return names


def closure(names: list[str]) -> set[str]:
    seen: set[str] = set()
    while names:
        name = names.pop()
        if name.lower() not in seen:
            seen.add(name.lower())
            names.extend(requirements(name))
    return seen


def copy_distribution(name: str, site: Path) -> None:
    dist = metadata.distribution(name)
    for file in dist.files or []:
        source = Path(str(dist.locate_file(file))).resolve()
        if file.parts[0] == ".." or not source.is_file():
            continue  # console scripts and the like live outside site-packages
        target = site / file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def test_the_verifier_installs_and_verifies_without_the_issuer(tmp_path: Path,
                                                               auth: Authority) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(wheels), str(ROOT)], check=True,
                   capture_output=True, timeout=300)
    wheel = next(wheels.glob("software_statement_issuer-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        required = [Requirement(line.split(":", 1)[1].strip()) for line in
                    archive.read(meta).decode().splitlines() if line.startswith("Requires-Dist:")]
    core = {r.name for r in required if r.marker is None}
    assert core == {"joserfc", "cryptography"}
    assert ISSUER_ONLY <= {r.name for r in required
                           if r.marker is not None and r.marker.evaluate({"extra": "issuer"})}

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"], check=True,
                               capture_output=True, text=True).stdout.strip())
    needed = closure(["joserfc", "cryptography", "authlib"])
    assert not needed & ISSUER_ONLY
    for name in needed:
        copy_distribution(name, site)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                    str(wheel) + "[authlib]"], check=True, capture_output=True, timeout=120)
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout  # every requirement of the slim install is met

    token = auth.mint(MintRequest("mcp-connector", {"software_version": "1"}), principal="ci",
                      channel="cli").software_statement
    (tmp_path / "jwks.json").write_text(json.dumps(auth.jwks()))
    script = f"""
import importlib.util, json, sys
from issuer.verifier import StatementVerifier, TrustedIssuer
from issuer.verifier.authlib import SoftwareStatementRegistration
jwks = json.load(open({str(tmp_path / "jwks.json")!r}))
verifier = StatementVerifier(trusted=[TrustedIssuer(issuer="https://issuer.example.com",
                                                    jwks=jwks, check_status=False)])
statement = verifier.verify({token!r})
missing = [m for m in ("fastapi", "uvicorn", "sqlalchemy", "click")
           if importlib.util.find_spec(m) is None]
print(json.dumps({{"iss": statement.issuer, "missing": missing}}))
"""
    run = subprocess.run([str(python), "-c", script], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)  # not the checkout: the installed package
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"iss": "https://issuer.example.com",
                                      "missing": ["fastapi", "uvicorn", "sqlalchemy", "click"]}
    command = subprocess.run([str(venv / "bin" / "issuer"), "--help"], capture_output=True,
                             text=True, timeout=60)
    assert command.returncode == 2 and "Traceback" not in command.stderr
    assert "install 'software-statement-issuer[issuer]'" in command.stderr
