"""Ctrl-C during `issuer mint --batch`: a real SIGINT to this process at each phase."""

from __future__ import annotations

import importlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from issuer.core.authority import Authority
from tests.conftest import Cli, assert_one_line_error


mint_command = importlib.import_module("issuer.cli.mint")  # the module, not the command


def batch_file(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "batch.jsonl"
    path.write_text("".join(json.dumps({"template": "desktop-agent",
                                        "claims": {"software_version": f"1.{i}"}}) + "\n"
                            for i in range(n)))
    return path


def recorded(cli: Cli) -> list[str]:
    return [r["jti"] for r in json.loads(cli("audit", "list", "--json").stdout)]


def ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_after_the_commit_still_writes_the_output(cli: Cli, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    emit = mint_command._emit

    def interrupted_emit(*args: Any, **kwargs: Any) -> None:
        ctrl_c()  # the batch is committed; the output not yet written
        emit(*args, **kwargs)

    monkeypatch.setattr(mint_command, "_emit", interrupted_emit)
    out = tmp_path / "out.jsonl"
    result = cli("mint", "--batch", str(batch_file(tmp_path, 5)), "--json", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    written = [json.loads(line)["jti"] for line in out.read_text().splitlines()]
    assert written == recorded(cli) and len(written) == 5
    assert "don't mint them again" in result.stderr
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_ctrl_c_while_signing_records_nothing(cli: Cli, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    record = Authority._record  # called as each signature comes back
    calls: list[int] = []

    def interrupted_record(self: Authority, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            ctrl_c()
        return record(self, *args, **kwargs)

    monkeypatch.setattr(Authority, "_record", interrupted_record)
    result = cli("mint", "--batch", str(batch_file(tmp_path, 5)))
    assert_one_line_error(result, 130, "interrupted")
    assert result.stdout == "" and recorded(cli) == []
    monkeypatch.setattr(Authority, "_record", record)
    assert cli("audit", "verify").exit_code == 0
