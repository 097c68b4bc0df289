"""py-amqp's transport reading ahead (sanad.platform.frames): on a real RabbitMQ, a consumer gets every
message whole and in order, small and larger than the read-ahead, with far fewer system calls; on a real
loopback connection, a frame that arrives in pieces, a timeout in between, is read whole once the rest
comes, and a closed connection is an error."""
import socket

import pytest
from amqp.transport import TCPTransport
from kombu import Connection, Exchange, Queue

from sanad.platform import frames

EXCHANGE = Exchange("frames_test", type="direct", durable=False)
SIZES = [1, 300, 5_000, frames.READ_AHEAD, 3 * frames.READ_AHEAD + 7]


@pytest.fixture(params=[False, True], ids=["as py-amqp reads", "reading ahead"])
def reading(request):
    frames.read_ahead(request.param)
    yield request.param
    frames.read_ahead()  # what every service does, and so what the rest of the test run expects


def counting_recv(transport):
    calls = []
    recv = transport._quick_recv

    def recv_counted(size):
        calls.append(size)
        return recv(size)

    transport._quick_recv = recv_counted
    return calls


def test_a_consumer_gets_every_message_whole_and_in_order(amqp_uri, reading):
    queue = Queue("frames_test.flood", exchange=EXCHANGE, routing_key="flood", auto_delete=True)
    bodies = [bytes([65 + n % 26]) * SIZES[n % len(SIZES)] for n in range(200)]
    received = []
    with Connection(amqp_uri) as connection:
        channel = connection.channel()
        bound = queue(channel)
        bound.declare()
        producer = connection.Producer(channel)
        for body in bodies:
            producer.publish(body, exchange=EXCHANGE, routing_key="flood", content_type="application/octet-stream",
                             content_encoding="binary")
        calls = counting_recv(connection.connection.transport)
        with connection.Consumer(bound, callbacks=[lambda body, message: (received.append(body), message.ack())],
                                 prefetch_count=len(bodies)):
            while len(received) < len(bodies):
                connection.drain_events(timeout=5)
    assert received == bodies
    if reading:
        assert len(calls) < len(bodies), f"{len(calls)} reads for {len(bodies)} messages"
    else:
        assert len(calls) >= 3 * len(bodies)


@pytest.fixture
def transport_and_peer():
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
        with client, peer:
            transport = TCPTransport.__new__(TCPTransport)  # the transport's reading, on a socket made here
            transport.sock = client
            transport.raise_on_initial_eintr = True
            transport._setup_transport()
            yield transport, peer


def frame(payload, channel=1, kind=3):
    return bytes([kind]) + channel.to_bytes(2, "big") + len(payload).to_bytes(4, "big") + payload + b"\xce"


def test_a_frame_arriving_in_pieces_around_a_timeout_is_read_whole_and_the_next_one_after_it(
        transport_and_peer, reading):
    transport, peer = transport_and_peer
    first, second = frame(b"x" * 20_000), frame(b"next", channel=2)
    transport.sock.settimeout(0.05)

    peer.sendall(first[:5])
    with pytest.raises(socket.timeout):
        transport.read_frame()
    peer.sendall(first[5:12_000])
    with pytest.raises(socket.timeout):
        transport.read_frame()
    peer.sendall(first[12_000:] + second)
    transport.sock.settimeout(5)

    assert transport.read_frame() == (3, 1, b"x" * 20_000)
    assert transport.read_frame() == (3, 2, b"next")
    assert transport._read_buffer == b""


def test_a_connection_the_broker_closes_mid_frame_is_an_error(transport_and_peer, reading):
    transport, peer = transport_and_peer
    peer.sendall(frame(b"cut short")[:9])
    peer.close()
    transport.sock.settimeout(5)
    with pytest.raises(OSError, match="closed"):
        transport.read_frame()
