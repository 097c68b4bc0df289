"""Sending over TCP with fewer, fuller segments."""
import socket
from contextlib import contextmanager, suppress


@contextmanager
def corked(sock):
    """Hold back what the block writes to the TCP socket `sock`, and send it together when the block ends.

    A client library that writes a batch in pieces (py-amqp, a message at a time) sends each at once: the
    kernel carries each through its network stack and wakes the reader, once a piece. Corked (Linux's
    TCP_CORK), the block's writes only fill the socket's buffer, and leave together, in full segments,
    when it is uncorked (docs/performance.md, item 49). Where TCP_CORK does not exist, or there is no
    socket yet, writes go as they come."""
    option = getattr(socket, "TCP_CORK", None)
    if option is None or sock is None:
        yield
        return
    sock.setsockopt(socket.IPPROTO_TCP, option, 1)
    try:
        yield
    finally:
        with suppress(OSError):  # the socket broke in the block: what it held is lost either way
            sock.setsockopt(socket.IPPROTO_TCP, option, 0)
