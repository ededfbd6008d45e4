"""Free loopback ports: never the same one twice in a process, never an ephemeral one."""

import socket

from semantic.tools.devstack import ports
from semantic.tools.devstack.ports import free_port


def test_free_port_never_hands_out_the_same_port_twice() -> None:
    # 500 picks from ~12,700 ports: without the check about ten would repeat (the
    # birthday bound), as a port did in one clean run.
    picked = [free_port() for _ in range(500)]
    assert len(set(picked)) == len(picked)


def test_free_ports_lie_below_the_kernels_ephemeral_range() -> None:
    # Outgoing connections take their source ports from that range: a port picked there
    # could be taken by any client before its server binds it.
    low, _ = ports._ephemeral_range()
    picked = [free_port() for _ in range(50)]
    assert all(20_000 <= port < low for port in picked)


def test_a_picked_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
