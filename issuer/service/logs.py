"""The service's logs: text for a terminal, or structured JSON for a log pipeline (one object per
line: one per request, one per audit event, and the server's own messages).

Nothing secret can reach a line: a request line holds method, path (without the query), status,
duration and the client address, never a header (API tokens travel in ``Authorization``) or a
body; an audit line holds the event's index, time, type, actor, channel and subject, never its
data. The audit lines come from the database, so events the CLI records while the service runs
appear too.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime, timezone
from typing import Any, Literal

from issuer.core.authority import Authority

LogFormat = Literal["text", "json"]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

requests_log = logging.getLogger("issuer.request")
audit_log = logging.getLogger("issuer.audit")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time``, ``level``, ``logger``, ``message`` and the record's
    ``fields`` (given as ``extra={"fields": {...}}``)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:  # JSON escapes the newlines: still one line
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str)


def log_config(fmt: LogFormat) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` for uvicorn and the issuer's own loggers."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["issuer"] = {"format": "%(levelname)s:     %(name)s: %(message)s"}
    config["handlers"]["issuer"] = {"formatter": "issuer", "class": "logging.StreamHandler",
                                    "stream": "ext://sys.stderr"}
    config["loggers"]["issuer"] = {"handlers": ["issuer"], "level": "INFO", "propagate": False}
    if fmt == "json":
        for name in config["formatters"]:
            config["formatters"][name] = {"()": f"{__name__}.JsonFormatter"}
    return config


class RequestLog:
    """ASGI middleware: one ``issuer.request`` line per HTTP request, when it completes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app fails before it answers, the server answers 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client")
            requests_log.info("%s %s %d", scope["method"], scope["path"], status, extra={
                "fields": {"kind": "request", "method": scope["method"], "path": scope["path"],
                           "status": status,
                           "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                           "client": client[0] if client else None}})


class AuditTail:
    """Logs each audit event recorded after the service started, one ``issuer.audit`` line
    each, polling the event record (whoever wrote it: the service or the CLI)."""

    def __init__(self, authority: Authority, interval: float = 1.0) -> None:
        self.audit = authority.audit
        self.interval = interval
        self.next = self.audit.next_index()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="audit-log", daemon=True)

    def run_once(self) -> None:
        # Only the columns a line shows, on this thread's reader: the tail never takes the
        # writer's lock (a mint storm's thousands of events a second would hold up commits).
        for idx, time, type_, actor, channel, subject in self.audit.event_heads(self.next):
            audit_log.info("%s %s by %s (%s)", type_, subject, actor, channel, extra={"fields": {
                "kind": "audit", "idx": idx, "event_time": time, "type": type_, "actor": actor,
                "channel": channel, "subject": subject}})
            self.next = idx + 1

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:  # the log must never take the service down
                audit_log.exception("reading the audit events for the log failed")
