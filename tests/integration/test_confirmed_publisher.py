"""The outbox's publisher on a real RabbitMQ: a batch published, then its confirms awaited together."""
import socket

import pytest
from kombu import Connection, Exchange, Queue

from sanad.platform.broker import ConfirmedPublisher, PublishNotConfirmed

EXCHANGE = Exchange("publisher_test", type="direct", durable=True)


@pytest.fixture
def publisher(amqp_uri):
    publisher = ConfirmedPublisher(amqp_uri)
    yield publisher
    publisher.release()


def declare(amqp_uri, name, **arguments):
    queue = Queue(name, exchange=EXCHANGE, routing_key=name, durable=True, queue_arguments=arguments or None)
    with Connection(amqp_uri) as connection:
        queue(connection.default_channel).declare()
    return queue


def take_all(amqp_uri, queue):
    """Every message on `queue`, in order, acknowledged."""
    taken = []
    with Connection(amqp_uri) as connection:
        bound = queue(connection.default_channel)
        while (message := bound.get(no_ack=True)) is not None:
            taken.append(message)
    return taken


def messages(routing_key, count):
    return [(f"event-{i}", routing_key, {"n": i}) for i in range(count)]


def test_a_batch_is_confirmed_and_arrives_whole_in_order_as_persistent_messages(publisher, amqp_uri):
    queue = declare(amqp_uri, "publisher_test.whole")

    publisher.publish_all(EXCHANGE, messages(queue.name, 30))
    publisher.publish_all(EXCHANGE, messages(queue.name, 1))  # the channel's count goes on across batches

    taken = take_all(amqp_uri, queue)
    assert [message.payload["n"] for message in taken] == list(range(30)) + [0]
    assert [message.properties["message_id"] for message in taken[:3]] == ["event-0", "event-1", "event-2"]
    assert {message.properties["delivery_mode"] for message in taken} == {2}


def test_a_batch_the_broker_refuses_in_part_raises(publisher, amqp_uri):
    queue = declare(amqp_uri, "publisher_test.full", **{"x-max-length": 2, "x-overflow": "reject-publish"})

    with pytest.raises(PublishNotConfirmed, match="refused 3"):
        publisher.publish_all(EXCHANGE, messages(queue.name, 5))

    assert [message.payload["n"] for message in take_all(amqp_uri, queue)] == [0, 1]


def test_confirms_that_do_not_come_in_time_raise(amqp_uri):
    queue = declare(amqp_uri, "publisher_test.late")
    impatient = ConfirmedPublisher(amqp_uri, confirm_timeout=1e-9)
    try:
        with pytest.raises(PublishNotConfirmed, match="not confirmed in time"):
            impatient.publish_all(EXCHANGE, messages(queue.name, 5))
    finally:
        impatient.release()


@pytest.mark.skipif(not hasattr(socket, "TCP_CORK"), reason="TCP_CORK is Linux's")
def test_a_batch_is_written_while_the_connection_is_corked(publisher, amqp_uri, monkeypatch):
    queue = declare(amqp_uri, "publisher_test.corked")
    sock = publisher.connection.connection.sock
    corked_at_each = []
    publish = publisher.producer.publish

    def publish_noting_the_cork(*args, **kwargs):
        corked_at_each.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK))
        return publish(*args, **kwargs)

    monkeypatch.setattr(publisher.producer, "publish", publish_noting_the_cork)
    publisher.publish_all(EXCHANGE, messages(queue.name, 3))

    assert corked_at_each == [1, 1, 1], "each message went to the broker as a segment of its own"
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK) == 0
    assert [message.payload["n"] for message in take_all(amqp_uri, queue)] == [0, 1, 2]
