"""`issuer audit list` ordering and `issuer keys revoke` output (docs/cli.md)."""

from __future__ import annotations

import json

from tests.conftest import Cli, assert_one_line_error


def test_last_n_and_newest_first(cli: Cli) -> None:
    for version in ("1", "2", "3", "4"):
        assert cli("mint", "desktop-agent", "--set", f"software_version={version}").exit_code == 0

    def versions(*args: str) -> list[str]:
        result = cli("audit", "list", *args, "--json")
        assert result.exit_code == 0, result.stderr
        return [r["software_version"] for r in json.loads(result.stdout)]

    assert versions() == ["1", "2", "3", "4"]
    assert versions("--last", "2") == ["4", "3"]
    assert versions("--newest-first") == ["4", "3", "2", "1"]
    assert versions("--newest-first", "--limit", "3") == ["4", "3", "2"]
    assert versions("--limit", "2") == ["1", "2"]
    text = cli("audit", "list", "--last", "1").stdout.splitlines()
    assert len(text) == 2 and text[0].startswith("JTI")
    assert_one_line_error(cli("audit", "list", "--last", "2", "--limit", "2"), 2, "--last N")


def test_revoking_a_key_that_signed_nothing_prints_no_empty_table(cli: Cli) -> None:
    listed = json.loads(cli("keys", "list", "--json").stdout)
    nxt = next(k["kid"] for k in listed if k["state"] == "next")
    result = cli("keys", "revoke", nxt, "--reason", "superseded")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"revoked key {nxt} (superseded); it signed 0 statement(s), none of them unexpired: "
        "nothing to re-mint"]
    assert result.stderr == ""
