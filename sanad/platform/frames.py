"""Reading the broker's frames from a buffer, rather than a system call each.

py-amqp asks its socket for exactly the bytes it needs next: a frame's 7-byte header, then its payload,
then its one-byte end, each with a recv() of its own. A message delivered to a consumer is three frames,
so nine recv() calls, each a system call and, under eventlet, a trip through its green socket. Under the
benchmark's flood, reading frames was 14% of intake-status's busy samples and 5% of triage's and
referral's (docs/performance.md, item 52), while the broker had already sent the rest of the batch.

With `read_ahead()`, py-amqp's plain TCP transport asks for at least READ_AHEAD bytes whenever it must read:
what the broker has sent by then waits in the buffer py-amqp already keeps for partial reads, and the next
frames are cut from it without a system call. Only the amount asked for changes; what a transport does on
a timeout, an interrupted call or a closed connection stays py-amqp's. READ_AHEAD is small because py-amqp
copies what is left of the buffer each time it cuts a frame off its front: a few messages' worth saves
most of the calls for little copying.
"""
import errno
import socket

from amqp.transport import TCPTransport
from nameko.extensions import DependencyProvider

READ_AHEAD = 8192
_TRY_AGAIN = (errno.EAGAIN, errno.EINTR)

_original_read = TCPTransport._read


def _read_ahead(transport, n, initial=False):
    """TCPTransport._read: exactly `n` bytes from the peer, reading up to READ_AHEAD at a time."""
    buffered = transport._read_buffer
    try:
        while len(buffered) < n:
            try:
                received = transport._quick_recv(max(n - len(buffered), READ_AHEAD))
            except OSError as exc:
                if exc.errno not in _TRY_AGAIN:
                    raise
                if initial and transport.raise_on_initial_eintr:
                    raise socket.timeout() from exc
                continue
            if not received:
                raise OSError("Server unexpectedly closed connection")
            buffered += received
    except BaseException:  # keep what arrived for the next read, as py-amqp does
        transport._read_buffer = buffered
        raise
    transport._read_buffer = buffered[n:]
    return buffered[:n]


def read_ahead(enabled=True) -> None:
    """Have every plain TCP connection to the broker in this process read ahead (or, with
    enabled=False, read as py-amqp does)."""
    TCPTransport._read = _read_ahead if enabled else _original_read


class FramesReadAhead(DependencyProvider):
    """Has the service's connections to the broker read ahead from the moment the container is set up,
    before its consumers connect."""

    def setup(self):
        read_ahead()
