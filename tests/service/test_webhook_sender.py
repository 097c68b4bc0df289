"""notify's HTTP sender on real loopback connections: it keeps a connection to a partner open for the
next webhook, reuses only a connection whose answer it read to the end, and sends again only when a
connection broke before any answer came, never after a timeout."""
import time

from sanad import webhooks
from services.notify.sender import EXCERPT_BYTES, Sender
from services.notify.urls import UrlPolicy
from tests.support.receiver import Receiver, Reply

LOOPBACK_ALLOWED = UrlPolicy(require_https=False, allow_private=True)


def signed(secret, webhook_id, body=b'{"type": "referral.offered", "data": {}}'):
    return body, webhooks.signed_headers([secret], webhook_id, int(time.time()), body)


def test_webhooks_to_one_partner_one_after_another_share_one_kept_connection():
    secret = webhooks.generate_secret()
    sender = Sender(LOOPBACK_ALLOWED, 2.0, 2.0, 5.0)
    with Receiver(secret) as receiver:
        results = [sender.post(receiver.url, *signed(secret, f"msg_{n}"))[0] for n in range(3)]
    assert [r.status_code for r in results] == [204, 204, 204]
    assert receiver.webhook_ids() == ["msg_0", "msg_1", "msg_2"]
    assert len(set(receiver.peers)) == 1, "each webhook opened a connection of its own"


def test_an_answer_longer_than_the_excerpt_is_cut_and_its_connection_is_not_reused():
    secret = webhooks.generate_secret()
    long_answer = b"x" * (EXCERPT_BYTES * 4)
    sender = Sender(LOOPBACK_ALLOWED, 2.0, 2.0, 5.0)
    with Receiver(secret, respond=lambda webhook_id, payload: Reply(200, body=long_answer)) as receiver:
        first = sender.post(receiver.url, *signed(secret, "msg_long"))
        second = sender.post(receiver.url, *signed(secret, "msg_next"))
    assert first[0].status_code == 200 and first[2] == "x" * EXCERPT_BYTES
    assert second[0].status_code == 200, "the unread rest of the first answer was taken for the second"
    assert len(set(receiver.peers)) == 2


def test_a_connection_dropped_before_an_answer_is_sent_once_more_at_once_under_the_same_webhook_id():
    secret = webhooks.generate_secret()
    dropped = []

    def drop_the_first(webhook_id, payload):
        if not dropped:
            dropped.append(webhook_id)
            return Reply(drop=True)
        return 204

    sender = Sender(LOOPBACK_ALLOWED, 2.0, 2.0, 5.0)
    with Receiver(secret, respond=drop_the_first) as receiver:
        result, _, _ = sender.post(receiver.url, *signed(secret, "msg_dropped_once"))
    assert result.status_code == 204
    assert receiver.attempts_for("msg_dropped_once") == ["dropped", 204]


def test_a_partner_dropping_every_connection_gets_two_tries_then_the_attempt_fails():
    secret = webhooks.generate_secret()
    sender = Sender(LOOPBACK_ALLOWED, 2.0, 2.0, 5.0)
    with Receiver(secret, respond=lambda webhook_id, payload: Reply(drop=True)) as receiver:
        result, _, _ = sender.post(receiver.url, *signed(secret, "msg_always_dropped"))
    assert (result.status_code, result.error) == (None, "connection_error")
    assert receiver.attempts_for("msg_always_dropped") == ["dropped", "dropped"]


def test_a_partner_answering_after_the_read_timeout_is_not_sent_the_webhook_again_in_that_attempt():
    secret = webhooks.generate_secret()
    sender = Sender(LOOPBACK_ALLOWED, 1.0, 0.5, 5.0)
    with Receiver(secret, respond=lambda webhook_id, payload: Reply(204, delay=1.0)) as receiver:
        result, _, _ = sender.post(receiver.url, *signed(secret, "msg_slow"))
        assert receiver.wait_until(lambda r: r.attempts_for("msg_slow"), timeout=10)
        time.sleep(1.5)  # a second request would have been sent 0.5 s after the first and answered by now
    assert result.error == "timeout"
    assert receiver.attempts_for("msg_slow") == [204]
