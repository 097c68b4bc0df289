"""Corking a real loopback TCP connection: what the block writes is held while it runs and arrives whole,
in order, once it ends."""
import socket

import pytest

from sanad.platform.sockets import corked

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_CORK"), reason="TCP_CORK is Linux's")


@pytest.fixture
def connected():
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
        with client, peer:
            peer.settimeout(5)
            yield client, peer


def cork_of(sock):
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK)


def read_exactly(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"the connection closed after {len(data)} of {size} bytes"
        data += chunk
    return data


def test_the_socket_is_corked_inside_the_block_only_and_everything_written_arrives(connected):
    client, peer = connected
    with corked(client):
        assert cork_of(client) == 1
        for n in range(50):
            client.sendall(b"piece %02d;" % n)
    assert cork_of(client) == 0
    assert read_exactly(peer, 50 * 9) == b"".join(b"piece %02d;" % n for n in range(50))


def test_the_socket_is_uncorked_when_the_block_raises(connected):
    client, peer = connected
    with pytest.raises(RuntimeError), corked(client):
        client.sendall(b"half")
        raise RuntimeError("the block failed")
    assert cork_of(client) == 0
    assert read_exactly(peer, 4) == b"half"


def test_a_socket_that_closed_in_the_block_keeps_the_blocks_own_error(connected):
    client, _ = connected
    with pytest.raises(RuntimeError, match="the block's own"), corked(client):
        client.close()
        raise RuntimeError("the block's own")


def test_no_socket_yet_is_left_alone():
    with corked(None):
        pass
