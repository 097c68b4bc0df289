"""Ports for servers a test starts, picked below the kernel's ephemeral range.

A port taken from the ephemeral range can be handed, a moment later, to some outgoing connection as its
local port (the services open many, to PostgreSQL and RabbitMQ), and then the server cannot bind it.
"""
import random
import socket

LOW, HIGH = 20000, 32000  # Linux hands out ephemeral ports from 32768 by default


def _ephemeral_floor():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return HIGH


def free_ports(count=1, attempts=100):
    """The first of `count` consecutive free ports on loopback."""
    high = min(HIGH, _ephemeral_floor()) - count
    for _ in range(attempts):
        base = random.randrange(LOW, high)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no {count} consecutive free ports between {LOW} and {high}")
