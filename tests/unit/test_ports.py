"""Free loopback ports: never the same one twice in a process."""

from semantic.tools.devstack.ports import free_port


def test_free_port_never_hands_out_the_same_port_twice() -> None:
    # 2,000 picks among the ~28,000 ephemeral ports: released ports offered again by
    # the OS would almost surely repeat (the birthday bound), as one clean run saw.
    ports = [free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)
