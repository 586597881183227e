"""Key custody: file keys safe at rest (scrypt, passphrase sources, re-encryption all at once)
and keystore state that can't be slipped past (checked passphrase, one next key, keyring
against the logged key events, modes, symlinks, private members)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from issuer.cli import cli as issuer_cli
from issuer.core.authority import Authority, init_issuer
from issuer.core.errors import KeystoreError
from issuer.core.statements import MintRequest
from issuer.keys.backends import file as file_backend
from issuer.keys.backends.file import ENCRYPTED_LABEL
from issuer.keys.keystore import Keystore
from tests.conftest import Cli, assert_one_line_error

GOOD = "correct horse battery staple"
OTHER = "another long passphrase, 2026"
SCRYPT_OID = "1.3.6.1.4.1.11591.4.11"


def run(home: Path, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(issuer_cli, [*args, "--config", str(home / "issuer.toml")],
                              env=env or {}, catch_exceptions=False)


def snapshot(keys_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(keys_dir.iterdir()) if p.is_file()
            and p.name != ".lock"}


@pytest.fixture(scope="module")
def encrypted_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An issuer whose key files are encrypted under GOOD, made once (scrypt is slow on
    purpose) and copied for each test."""
    home = tmp_path_factory.mktemp("encrypted") / "issuer"
    init_issuer(home, issuer="https://issuer.example.com", alg="ES256", actor="t",
                env={"ISSUER_KEY_PASSPHRASE": GOOD}).close()
    return home


@pytest.fixture
def encrypted(encrypted_template: Path, tmp_path: Path) -> Path:
    """A copy of the encrypted issuer (modes kept)."""
    return Path(shutil.copytree(encrypted_template, tmp_path / "issuer"))


# --- file keys at rest -------------------------------------------------------------------------


def test_key_files_are_pkcs8_under_scrypt_that_openssl_reads(encrypted: Path) -> None:
    pem = next(p for p in (encrypted / "keys").glob("*.pem") if p.name != "log.pem")
    assert pem.read_bytes().startswith(f"-----BEGIN {ENCRYPTED_LABEL}-----".encode())
    parsed = subprocess.run(["openssl", "asn1parse", "-in", str(pem)], capture_output=True,
                            text=True, check=True).stdout
    assert ":PBES2" in parsed and ":scrypt" in parsed and ":aes-256-cbc" in parsed
    # N = 2^14 (0x4000), r = 8, p = 5: OWASP's equivalent of N = 2^17, r = 8, p = 1
    assert ":4000" in parsed and ":08" in parsed and ":05" in parsed
    opened = subprocess.run(["openssl", "pkey", "-in", str(pem), "-passin", f"pass:{GOOD}",
                             "-noout"], capture_output=True)
    assert opened.returncode == 0, opened.stderr
    wrong = subprocess.run(["openssl", "pkey", "-in", str(pem), "-passin", f"pass:{OTHER}",
                            "-noout"], capture_output=True)
    assert wrong.returncode != 0


def test_short_passphrases_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    result = CliRunner().invoke(issuer_cli, ["init", "--dir", str(tmp_path / "i")],
                                env={"ISSUER_KEY_PASSPHRASE": "too short"})
    assert result.exit_code == 1 and "at least 15 characters" in result.stderr
    assert not (tmp_path / "i" / "issuer.toml").exists()
    assert not list((tmp_path / "i" / "keys").glob("*.pem"))


def test_init_without_a_passphrase_warns_that_keys_are_unencrypted(tmp_path: Path) -> None:
    plain = CliRunner().invoke(issuer_cli, ["init", "--dir", str(tmp_path / "a")], env={})
    assert plain.exit_code == 0
    assert "NOT encrypted" in plain.stderr
    secret = tmp_path / "passphrase"
    secret.write_text(GOOD + "\n")
    quiet = CliRunner().invoke(issuer_cli, ["init", "--dir", str(tmp_path / "b")],
                               env={"ISSUER_KEY_PASSPHRASE_FILE": str(secret)})
    assert quiet.exit_code == 0 and "NOT encrypted" not in quiet.stderr


def test_the_passphrase_file_opens_the_keys(encrypted: Path, tmp_path: Path) -> None:
    secret = tmp_path / "credential"
    secret.write_text(GOOD + "\n")  # systemd credentials and container secrets end in \n
    minted = run(encrypted, "mint", "mcp-connector", "--set", "software_version=1",
                 env={"ISSUER_KEY_PASSPHRASE_FILE": str(secret)})
    assert minted.exit_code == 0, minted.stderr
    assert_one_line_error(run(encrypted, "mint", "mcp-connector", "--set",
                              "software_version=1"), 1, "is encrypted; set ISSUER_KEY_PASSPHRASE")
    both = {"ISSUER_KEY_PASSPHRASE_FILE": str(secret), "ISSUER_KEY_PASSPHRASE": GOOD}
    assert_one_line_error(run(encrypted, "mint", "mcp-connector", "--set",
                              "software_version=1", env=both), 1, "not both")
    missing = {"ISSUER_KEY_PASSPHRASE_FILE": str(tmp_path / "nowhere")}
    assert_one_line_error(run(encrypted, "mint", "mcp-connector", "--set",
                              "software_version=1", env=missing), 1, "cannot read")


def test_a_terminal_prompt_is_asked_once_when_no_passphrase_is_set(encrypted: Path) -> None:
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return GOOD

    auth = Authority.from_config(encrypted / "issuer.toml", env={}, prompt=prompt)
    try:
        auth.mint(MintRequest("mcp-connector", {"software_version": "1"}), principal="t",
                  channel="cli")
        auth.keys.generate("ES256", actor="t", channel="cli")  # new key, same passphrase
        auth.mint(MintRequest("mcp-connector", {"software_version": "2"}), principal="t",
                  channel="cli")
    finally:
        auth.close()
    assert len(asked) == 1 and "Passphrase" in asked[0]
    newest = max((encrypted / "keys").glob("*.pem"), key=lambda p: p.stat().st_mtime_ns)
    assert newest.read_bytes().startswith(b"-----BEGIN ENCRYPTED")


def test_keys_passphrase_re_encrypts_every_key(encrypted: Path, tmp_path: Path) -> None:
    new = tmp_path / "new"
    new.write_text(OTHER + "\n")
    before = snapshot(encrypted / "keys")
    done = run(encrypted, "keys", "passphrase", "--new-passphrase-file", str(new), "--json",
               env={"ISSUER_KEY_PASSPHRASE": GOOD})
    assert done.exit_code == 0, done.stderr
    files = json.loads(done.stdout)["files"]
    assert "log.pem" in files and len(files) == 3
    after = snapshot(encrypted / "keys")
    assert all(after[f] != before[f] for f in files)
    assert not [p for p in (encrypted / "keys").iterdir() if p.suffix == ".new"]
    assert_one_line_error(run(encrypted, "mint", "mcp-connector", "--set", "software_version=1",
                              env={"ISSUER_KEY_PASSPHRASE": GOOD}), 1, "wrong")
    ok = run(encrypted, "mint", "mcp-connector", "--set", "software_version=1",
             env={"ISSUER_KEY_PASSPHRASE": OTHER})
    assert ok.exit_code == 0, ok.stderr
    events = run(encrypted, "audit", "list", "--json", env={"ISSUER_KEY_PASSPHRASE": OTHER})
    assert events.exit_code == 0
    assert run(encrypted, "audit", "verify", env={"ISSUER_KEY_PASSPHRASE": OTHER}).exit_code == 0
    # and back to unencrypted files
    plain = run(encrypted, "keys", "passphrase", "--remove", env={"ISSUER_KEY_PASSPHRASE": OTHER})
    assert plain.exit_code == 0, plain.stderr
    assert run(encrypted, "mint", "mcp-connector", "--set", "software_version=2").exit_code == 0


def test_keys_passphrase_with_a_wrong_passphrase_changes_nothing(encrypted: Path,
                                                                 tmp_path: Path) -> None:
    new = tmp_path / "new"
    new.write_text(OTHER)
    before = snapshot(encrypted / "keys")
    assert_one_line_error(run(encrypted, "keys", "passphrase", "--new-passphrase-file",
                              str(new), env={"ISSUER_KEY_PASSPHRASE": "not the passphrase!"}),
                          1, "wrong")
    short = tmp_path / "short"
    short.write_text("short")
    assert_one_line_error(run(encrypted, "keys", "passphrase", "--new-passphrase-file",
                              str(short), env={"ISSUER_KEY_PASSPHRASE": GOOD}), 1, "at least 15")
    assert_one_line_error(run(encrypted, "keys", "passphrase", env={"ISSUER_KEY_PASSPHRASE": GOOD}),
                          2, "--new-passphrase-file")
    assert snapshot(encrypted / "keys") == before


@pytest.mark.parametrize("crash_after", [0, 1])
def test_a_passphrase_change_cut_short_leaves_all_old_or_all_new(
        encrypted: Path, monkeypatch: pytest.MonkeyPatch, crash_after: int) -> None:
    """Crash before the commit marker (0: every key still opens with the old passphrase), or
    after it, between renames (1: the next load finishes, every key opens with the new)."""
    store = Keystore(encrypted / "keys", GOOD)
    real_replace = os.replace
    renames: list[str] = []

    def flaky_replace(src: os.PathLike[str] | str, dst: os.PathLike[str] | str) -> None:
        if str(src).endswith(".new"):
            if len(renames) >= crash_after and crash_after:
                raise OSError("power cut")
            renames.append(str(dst))
        real_replace(src, dst)

    real_write = file_backend.atomic_write

    def flaky_write(path: Path, data: bytes, mode: int = 0o644) -> None:
        if path.name == file_backend.REKEY_MARKER and not crash_after:
            raise OSError("power cut")
        real_write(path, data, mode=mode)

    monkeypatch.setattr(file_backend.os, "replace", flaky_replace)
    monkeypatch.setattr(file_backend, "atomic_write", flaky_write)
    with pytest.raises(OSError, match="power cut"):
        store.change_passphrase(OTHER)
    monkeypatch.undo()
    survivor = OTHER if crash_after else GOOD
    auth = Authority.from_config(encrypted / "issuer.toml",
                                 env={"ISSUER_KEY_PASSPHRASE": survivor})
    try:
        for key in auth.keystore.keys():
            auth.keystore.signer(key.kid)
        auth.keystore.log_signer()
    finally:
        auth.close()
    assert not (encrypted / "keys" / file_backend.REKEY_MARKER).exists()


# --- keystore state that can't be slipped past -----------------------------------------------


def test_a_wrong_passphrase_writes_nothing(encrypted: Path) -> None:
    before = snapshot(encrypted / "keys")
    events = len(Authority.from_config(encrypted / "issuer.toml", env={}).audit.events())
    wrong = {"ISSUER_KEY_PASSPHRASE": "a wrong but long passphrase"}
    assert_one_line_error(run(encrypted, "keys", "generate", env=wrong), 1,
                          "wrong ISSUER_KEY_PASSPHRASE")
    assert_one_line_error(run(encrypted, "keys", "generate"), 1, "is encrypted")
    nxt = json.loads(run(encrypted, "keys", "list", "--json").stdout)[1]["kid"]
    assert_one_line_error(run(encrypted, "keys", "revoke", nxt, "--reason", "superseded",
                              env=wrong), 1, "wrong ISSUER_KEY_PASSPHRASE")
    assert_one_line_error(run(encrypted, "keys", "rotate", "--force", env=wrong), 1, "wrong")
    assert snapshot(encrypted / "keys") == before
    auth = Authority.from_config(encrypted / "issuer.toml", env={})
    assert len(auth.audit.events()) == events
    auth.close()


def test_there_is_one_next_key(cli: Cli, home: Path) -> None:
    for _ in range(3):
        assert cli("keys", "generate").exit_code == 0
    states = [k["state"] for k in json.loads(cli("keys", "list", "--json").stdout)]
    assert states.count("next") == 1 and states.count("active") == 1
    assert states.count("revoked") == 3  # each superseded next key, withdrawn and logged
    assert cli("audit", "verify").exit_code == 0


def test_rotation_refuses_a_next_key_that_cannot_sign(cli: Cli, home: Path) -> None:
    ring = json.loads((home / "keys" / "keyring.json").read_text())
    active, nxt = (next(k for k in ring["keys"] if k["state"] == s) for s in ("active", "next"))
    # the next key's file now holds another key (the active one)
    path = home / "keys" / f"{nxt['kid']}.pem"
    path.write_bytes((home / "keys" / f"{active['kid']}.pem").read_bytes())
    before = snapshot(home / "keys")
    assert_one_line_error(cli("keys", "rotate", "--force"), 1,
                          f"refusing to activate key {nxt['kid']}")
    assert snapshot(home / "keys") == before
    assert cli("mint", "mcp-connector", "--set", "software_version=1").exit_code == 0


def _keyring(home: Path) -> tuple[Path, dict[str, list[dict[str, object]]]]:
    path = home / "keys" / "keyring.json"
    return path, json.loads(path.read_text())


def test_a_public_key_added_to_the_keyring_by_hand_is_reported_and_not_served(
        cli: Cli, home: Path, tmp_path: Path) -> None:
    # the attacker's own key, made elsewhere, slipped into the keyring as `next`
    other = Keystore(tmp_path / "elsewhere").generate("ES256", state="active", now=1)
    path, ring = _keyring(home)
    ring["keys"] = [k for k in ring["keys"] if k["state"] != "next"]
    entry = {**json.loads((tmp_path / "elsewhere" / "keyring.json").read_text())["keys"][0],
             "state": "next"}
    ring["keys"].append(entry)
    path.write_text(json.dumps(ring))
    assert other.kid not in cli("jwks").stdout
    assert_one_line_error(cli("audit", "verify"), 1, other.kid, "no key event logs it")


def test_an_un_revoked_key_is_reported_and_not_served(cli: Cli, home: Path) -> None:
    nxt = json.loads(cli("keys", "list", "--json").stdout)[1]["kid"]
    assert cli("keys", "revoke", nxt, "--reason", "compromised").exit_code == 0
    path, ring = _keyring(home)
    for entry in ring["keys"]:
        if entry["kid"] == nxt:
            entry.update(state="next", revoked_at=None, revocation_reason=None)
    ring["keys"] = [k for k in ring["keys"] if k["kid"] == nxt or k["state"] != "next"]
    path.write_text(json.dumps(ring))
    assert nxt not in cli("jwks").stdout
    assert_one_line_error(cli("audit", "verify"), 1, f"key {nxt} is next in the keyring but "
                                                      "revoked in the audit log")


def test_private_members_in_the_keyring_never_reach_a_jwks(cli: Cli, home: Path) -> None:
    path, ring = _keyring(home)
    ring["keys"][0]["public_jwk"]["d"] = "c2VjcmV0"  # type: ignore[index]
    path.write_text(json.dumps(ring))
    jwks = json.loads(cli("jwks").stdout)
    assert jwks["keys"] and all("d" not in k for k in jwks["keys"])
    assert_one_line_error(cli("audit", "verify"), 1, "carries members a public key has not (d)")


def test_a_keys_directory_others_can_enter_is_refused(cli: Cli, home: Path) -> None:
    os.chmod(home / "keys", 0o755)
    assert_one_line_error(cli("jwks"), 1, "refusing keys directory", "chmod 700")
    assert_one_line_error(cli("mint", "mcp-connector", "--set", "software_version=1"), 1,
                          "refusing keys directory")


def test_symlinked_key_files_are_refused(cli: Cli, home: Path, tmp_path: Path) -> None:
    active = json.loads(cli("keys", "list", "--json").stdout)[0]["kid"]
    pem = home / "keys" / f"{active}.pem"
    outside = tmp_path / "outside.pem"
    shutil.move(pem, outside)
    pem.symlink_to(outside)
    assert_one_line_error(cli("mint", "mcp-connector", "--set", "software_version=1"), 1,
                          "symbolic link")
    ring = home / "keys" / "keyring.json"
    shutil.move(ring, tmp_path / "ring.json")
    ring.symlink_to(tmp_path / "ring.json")
    assert_one_line_error(cli("jwks"), 1, "not a regular file")


def test_an_unencrypted_key_with_a_passphrase_set_is_refused(home: Path) -> None:
    store = Keystore(home / "keys", GOOD)
    with pytest.raises(KeystoreError, match="not encrypted but ISSUER_KEY_PASSPHRASE is set"):
        store.signer()


def test_keys_from_before_scrypt_still_open_and_are_rewritten(encrypted: Path,
                                                              tmp_path: Path) -> None:
    """Key files written with cryptography's BestAvailableEncryption (PBKDF2, 2,048 rounds)
    keep working, and `issuer keys passphrase` moves them to scrypt."""
    from cryptography.hazmat.primitives import serialization

    keys = encrypted / "keys"
    for pem in keys.glob("*.pem"):
        private = serialization.load_pem_private_key(pem.read_bytes(), GOOD.encode())
        pem.write_bytes(private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(GOOD.encode())))
    env = {"ISSUER_KEY_PASSPHRASE": GOOD}
    assert run(encrypted, "mint", "mcp-connector", "--set", "software_version=1",
               env=env).exit_code == 0
    new = tmp_path / "new"
    new.write_text(OTHER)
    assert run(encrypted, "keys", "passphrase", "--new-passphrase-file", str(new),
               env=env).exit_code == 0
    for pem in keys.glob("*.pem"):
        parsed = subprocess.run(["openssl", "asn1parse", "-in", str(pem)], capture_output=True,
                                text=True, check=True).stdout
        assert ":scrypt" in parsed, pem.name
