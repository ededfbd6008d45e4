"""Loopback TCP ports: pick a free one, wait until one accepts connections."""

from __future__ import annotations

import socket
import threading

_handed_out: set[int] = set()
_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on `host` that nothing listens on right now (the OS picks it).

    A port is released as soon as it is picked, so the OS may offer it again before its
    new owner binds it: callers often pick several ports and start their servers later.
    A port this process has handed out once is never handed out again.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with _lock:
        while True:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port: int = sock.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on `host:port`."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
