"""Loopback TCP ports: pick a free one, wait until one accepts connections."""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

_LOWEST = 20_000
"""Ports are picked from here up to the start of the kernel's ephemeral range."""
_ATTEMPTS = 200
_handed_out: set[int] = set()
_lock = threading.Lock()
_random = random.Random()


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel gives outgoing connections (and ``bind(0)``)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(family: socket.AddressFamily, host: str, port: int) -> bool:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on `host` that nothing listens on right now.

    Callers pick ports and start their servers later, so a picked port must stay free
    until then. Two things could take it meanwhile, and neither can: the kernel's
    ephemeral range (the source ports of every outgoing connection, and what ``bind(0)``
    hands out) is avoided by picking below it, at random; and a port this process has
    handed out once is never handed out again.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    low, _ = _ephemeral_range()
    with _lock:
        if low - _LOWEST >= 1000:
            for _ in range(_ATTEMPTS):
                port = _random.randrange(_LOWEST, low)
                if port not in _handed_out and _bindable(family, host, port):
                    _handed_out.add(port)
                    return port
        while True:  # no room below the ephemeral range: let the kernel pick
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
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
