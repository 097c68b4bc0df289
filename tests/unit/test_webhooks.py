"""Our signing checked against the verifiers partners use unchanged (the Standard Webhooks reference library
and Svix's), and against a vector computed here."""
import base64
import hashlib
import hmac
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from svix.webhooks import Webhook as SvixWebhook
from svix.webhooks import WebhookVerificationError as SvixVerificationError

from sanad import webhooks

BODY = json.dumps({
    "type": "referral.offered",
    "timestamp": "2024-03-10T09:30:00+00:00",
    "data": {"referral_id": "0d6f6b44-8f4f-4c2e-9a55-5a3c1f0e7b21", "case_reference": "SND-7K3Q-9F2M",
             "risk_level": "critical", "service": "legal_aid", "governorate": "basra", "note": "محافظة البصرة"},
}, ensure_ascii=False, separators=(",", ":")).encode()
WEBHOOK_ID = "msg_0d6f6b448f4f4c2e"


def _secret(raw: bytes) -> str:
    return "whsec_" + base64.b64encode(raw).decode()


def _now():
    return int(time.time())


# Against the reference verifier

def test_signed_headers_verify_with_the_reference_library():
    secret = webhooks.generate_secret()
    headers = webhooks.signed_headers([secret], WEBHOOK_ID, _now(), BODY)
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_signed_headers_carry_the_id_timestamp_and_json_content_type():
    secret = webhooks.generate_secret()
    timestamp = _now()
    headers = webhooks.signed_headers([secret], WEBHOOK_ID, timestamp, BODY)
    assert headers["webhook-id"] == WEBHOOK_ID
    assert headers["webhook-timestamp"] == str(timestamp)
    assert headers["content-type"] == "application/json"


@pytest.mark.parametrize("which", [0, 1], ids=["old-secret", "new-secret"])
def test_during_rotation_a_partner_holding_either_secret_verifies(which):
    secrets_in_rotation = [webhooks.generate_secret(), webhooks.generate_secret()]
    headers = webhooks.signed_headers(secrets_in_rotation, WEBHOOK_ID, _now(), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(secrets_in_rotation[which]).verify(BODY, headers) == json.loads(BODY)


def test_during_rotation_a_secret_outside_the_rotation_does_not_verify():
    headers = webhooks.signed_headers([webhooks.generate_secret(), webhooks.generate_secret()],
                                      WEBHOOK_ID, _now(), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.generate_secret()).verify(BODY, headers)


def test_tampered_body_does_not_verify():
    secret = webhooks.generate_secret()
    headers = webhooks.signed_headers([secret], WEBHOOK_ID, _now(), BODY)
    tampered = BODY.replace(b'"critical"', b'"low"')
    assert tampered != BODY
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, headers)


def test_changed_webhook_id_does_not_verify():
    secret = webhooks.generate_secret()
    headers = webhooks.signed_headers([secret], WEBHOOK_ID, _now(), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "msg_someone_else"})


def test_changed_timestamp_does_not_verify():
    secret = webhooks.generate_secret()
    timestamp = _now()
    headers = webhooks.signed_headers([secret], WEBHOOK_ID, timestamp, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-timestamp": str(timestamp - 1)})


def test_wrong_secret_does_not_verify():
    headers = webhooks.signed_headers([webhooks.generate_secret()], WEBHOOK_ID, _now(), BODY)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(webhooks.generate_secret()).verify(BODY, headers)


def test_stale_timestamp_does_not_verify_even_with_a_correct_signature():
    secret = webhooks.generate_secret()
    headers = webhooks.signed_headers([secret], WEBHOOK_ID, _now() - 10 * 60, BODY)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(BODY, headers)


# Against Svix's verifier, which partners may use instead

def test_signed_headers_verify_with_the_svix_library():
    secret = webhooks.generate_secret()
    headers = webhooks.signed_headers([secret], WEBHOOK_ID, _now(), BODY)
    SvixWebhook(secret).verify(BODY, headers)  # raises unless it verifies


@pytest.mark.parametrize("which", [0, 1], ids=["old-secret", "new-secret"])
def test_during_rotation_svix_verifies_with_either_secret(which):
    secrets_in_rotation = [webhooks.generate_secret(), webhooks.generate_secret()]
    headers = webhooks.signed_headers(secrets_in_rotation, WEBHOOK_ID, _now(), BODY)
    SvixWebhook(secrets_in_rotation[which]).verify(BODY, headers)


def test_svix_refuses_a_wrong_secret_a_tampered_body_and_a_stale_timestamp():
    secret = webhooks.generate_secret()
    headers = webhooks.signed_headers([secret], WEBHOOK_ID, _now(), BODY)
    with pytest.raises(SvixVerificationError):
        SvixWebhook(webhooks.generate_secret()).verify(BODY, headers)
    with pytest.raises(SvixVerificationError):
        SvixWebhook(secret).verify(BODY.replace(b'"critical"', b'"low"'), headers)
    stale = webhooks.signed_headers([secret], WEBHOOK_ID, _now() - 10 * 60, BODY)
    with pytest.raises(SvixVerificationError):
        SvixWebhook(secret).verify(BODY, stale)


def test_svix_verifies_the_headers_as_an_http_server_hands_them_over_in_any_case():
    secret = webhooks.generate_secret()
    headers = webhooks.signed_headers([secret], WEBHOOK_ID, _now(), BODY)
    SvixWebhook(secret).verify(BODY, {name.title(): value for name, value in headers.items()})
    assert Webhook(secret).verify(BODY, {name.title(): value for name, value in headers.items()})


# Against a known answer computed independently

def test_signature_matches_a_known_answer_computed_with_hmac_sha256():
    raw_key = bytes(range(32))
    secret = _secret(raw_key)
    timestamp = 1710063000
    body = b'{"type":"referral.offered","data":{"case_reference":"SND-7K3Q-9F2M"}}'
    content = b"msg_2KWPBgLlAfxdpx2AI54pPJ85f4W.1710063000." + body
    expected = "v1," + base64.b64encode(hmac.new(raw_key, content, hashlib.sha256).digest()).decode()

    assert webhooks.sign(secret, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", timestamp, body) == expected
    headers = webhooks.signed_headers([secret], "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", timestamp, body)
    assert headers["webhook-signature"] == expected


def test_rotation_header_is_each_secrets_signature_in_order_separated_by_a_space():
    first_key, second_key = b"\x01" * 32, b"\x02" * 24
    content = f"{WEBHOOK_ID}.1710063000.".encode() + BODY
    expected = " ".join(
        "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
        for key in (first_key, second_key)
    )
    headers = webhooks.signed_headers([_secret(first_key), _secret(second_key)], WEBHOOK_ID, 1710063000, BODY)
    assert headers["webhook-signature"] == expected


# Secrets

def test_generated_secret_has_the_prefix_and_32_random_bytes():
    secret = webhooks.generate_secret()
    assert secret.startswith("whsec_")
    assert len(webhooks.secret_bytes(secret)) == 32
    assert webhooks.generate_secret() != secret


def test_secret_bytes_are_the_base64_decoded_part_after_the_prefix():
    assert webhooks.secret_bytes(_secret(b"k" * 24)) == b"k" * 24


@pytest.mark.parametrize("secret", [
    base64.b64encode(b"k" * 32).decode(),
    "wh_" + base64.b64encode(b"k" * 32).decode(),
    "WHSEC_" + base64.b64encode(b"k" * 32).decode(),
], ids=["no-prefix", "other-prefix", "upper-case-prefix"])
def test_secret_without_the_whsec_prefix_is_refused(secret):
    with pytest.raises(ValueError, match="whsec_"):
        webhooks.secret_bytes(secret)
    with pytest.raises(ValueError):
        webhooks.sign(secret, WEBHOOK_ID, 1710063000, BODY)


def test_secret_of_exactly_24_bytes_is_accepted_and_23_bytes_refused():
    assert len(webhooks.secret_bytes(_secret(b"k" * 24))) == 24
    with pytest.raises(ValueError, match="at least 24 bytes"):
        webhooks.secret_bytes(_secret(b"k" * 23))


@pytest.mark.parametrize("secret", ["whsec_", "whsec_not base64 at all!", "whsec_" + "A" * 33],
                         ids=["empty", "not-base64", "bad-padding"])
def test_secret_that_is_empty_or_not_base64_is_refused(secret):
    with pytest.raises(ValueError):
        webhooks.secret_bytes(secret)


def test_signing_refuses_a_short_secret_rather_than_signing_with_it():
    with pytest.raises(ValueError):
        webhooks.signed_headers([webhooks.generate_secret(), _secret(b"short")], WEBHOOK_ID, _now(), BODY)
