"""The outbox's publisher, and a helper for kombu connections shared by the outbox and the health probe."""
import socket
import time

from kombu import Connection, Producer

from sanad.platform.sockets import corked

CONFIRM_TIMEOUT = 10.0  # seconds a batch may wait for the broker's confirms before it counts as failed


class PublishNotConfirmed(Exception):
    """The broker refused (nacked) a message, or did not confirm it in time: it may or may not have been
    routed, so whoever holds it must publish it again."""


class ConfirmedPublisher:
    """Publishes persistent messages on a channel in confirm mode, and waits for the broker's confirms
    once a batch rather than once a message.

    kombu's `confirm_publish` waits for each message's confirm before it sends the next, and the broker
    confirms a persistent message only once it has written it: a batch of twenty then waits for twenty of
    the broker's writes one after the other (11.9 ms, against 2.2 ms when the twenty are sent first and
    their confirms awaited together, and four times the broker's CPU; `python -m bench.confirms`,
    docs/performance.md item 32). A batch is written while the connection's socket is corked
    (sanad.platform.sockets), so that it leaves in full segments rather than a message at a time. A
    publisher that raised has lost count of its confirms: release it and open another.
    """

    def __init__(self, amqp_uri, connect_timeout=5, confirm_timeout=CONFIRM_TIMEOUT):
        self.confirm_timeout = confirm_timeout
        self.connection = Connection(amqp_uri, connect_timeout=connect_timeout)
        self.connection.ensure_connection(max_retries=1)
        self._socket = self.connection.connection.sock  # a publisher lives and dies with its connection
        channel = self.connection.channel()
        channel.confirm_select()
        channel.events["basic_ack"].add(self._settled)
        channel.events["basic_nack"].add(self._refused_by_broker)
        self.producer = Producer(channel)
        self._last_tag = 0  # the broker numbers a confirm-mode channel's messages 1, 2, 3...
        self._unconfirmed = set()
        self._refused = 0

    def publish_all(self, exchange, messages):
        """Publish each (message_id, routing_key, body) as persistent JSON, in order, then wait until the
        broker has confirmed them all; PublishNotConfirmed if it refused any or took too long."""
        with corked(self._socket):
            for message_id, routing_key, body in messages:
                self.producer.publish(body, exchange=exchange, routing_key=routing_key, serializer="json",
                                      delivery_mode=2, message_id=message_id, retry=False)
                self._last_tag += 1
                self._unconfirmed.add(self._last_tag)
        deadline = time.monotonic() + self.confirm_timeout
        while self._unconfirmed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishNotConfirmed(f"{len(self._unconfirmed)} messages not confirmed in time")
            try:
                self.connection.drain_events(timeout=remaining)
            except socket.timeout:
                pass  # the loop raises, now that the deadline has passed
        if self._refused:
            raise PublishNotConfirmed(f"the broker refused {self._refused} messages")

    def _settled(self, delivery_tag, multiple):
        """The unconfirmed messages a confirm settles: with `multiple`, every one up to its tag."""
        if multiple:
            settled = {tag for tag in self._unconfirmed if tag <= delivery_tag}
        else:
            settled = {delivery_tag} & self._unconfirmed
        self._unconfirmed -= settled
        return settled

    def _refused_by_broker(self, delivery_tag, multiple):
        self._refused += len(self._settled(delivery_tag, multiple))

    def release(self):
        self.connection.release()


def release_quietly(connection):
    """Release a connection that may already be broken; closing a dead one can fail, and it is gone either
    way. Returns None, for `self.connection = release_quietly(self.connection)`."""
    if connection is not None:
        try:
            connection.release()
        except Exception:  # noqa: BLE001 -- see the docstring
            pass
    return None
