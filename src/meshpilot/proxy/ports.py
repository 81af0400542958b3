"""Free ports for listeners that bind later (Envoy binds its listeners only once xDS says so).

A port the kernel hands out for `bind(0)` comes from the ephemeral range, the same range
outgoing connections take their local ports from; between choosing it and Envoy binding
it, an outgoing connection can take it. Listener ports are therefore picked below the
ephemeral range, at random, and each is handed out at most once per process.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_HANDED_OUT: set[int] = set()
_FLOOR = 20000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on, outside the ephemeral range, not handed out before."""
    high = _ephemeral_low() - 1
    low = _FLOOR if high - _FLOOR > 2000 else 1024
    for _ in range(200):
        port = random.randint(low, high)
        if port not in _HANDED_OUT and port_is_free(port, host):
            _HANDED_OUT.add(port)
            return port
    with socket.socket() as s:  # crowded machine: fall back to the kernel's choice
        s.bind((host, 0))
        return int(s.getsockname()[1])
