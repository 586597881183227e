"""The listening socket of ``issuer serve``: bound before anything else starts, so a busy port
is one line and exit 1, not a server that announces its start and then dies."""

from __future__ import annotations

import errno
import ipaddress
import socket

from issuer.core.errors import ListenError

_WHY = {
    errno.EADDRINUSE: "the address is in use (another process listens there: stop it, or "
                      "choose another --port)",
    errno.EADDRNOTAVAIL: "the address is not one of this machine's (check --host)",
    errno.EACCES: "permission denied (ports below 1024 need privileges; use a higher --port "
                  "behind the reverse proxy)",
}


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening; ListenError with the reason if not."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {where}: cannot resolve the host ({exc.strerror})"
                          ) from None
    sock = socket.socket(family, kind, proto)
    try:
        # As uvicorn does: lets a restart reuse a port in TIME_WAIT; a live listener still
        # makes bind fail with EADDRINUSE on Linux.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = _WHY.get(exc.errno or 0, exc.strerror or str(exc))
        raise ListenError(f"cannot listen on {where}: {reason}") from None
    sock.set_inheritable(True)
    return sock


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address (this machine only)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return True  # nothing to warn about: listen() reports the host
    return all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)
