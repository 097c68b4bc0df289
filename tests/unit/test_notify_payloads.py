"""What a partner and the supervisors' pager receive: the listed fields, a details link, nothing personal
unless a Disclosure says so, and never more than 20 KB."""
import json
import uuid
from datetime import datetime, timezone

import pytest

from services.notify import payloads
from services.notify.payloads import Disclosure

PUBLIC_URL = "https://sanad.example.org"
NARRATIVE = "He has my photos and says he will send them to my brothers on Thursday unless I pay."


def referral(**extra):
    return {
        "referral_id": uuid.UUID("1c7e2f0a-5b7d-4f3e-8c2a-6d9e0b1a2f34"),
        "case_id": uuid.UUID("6b1f0c52-3c1e-4d8a-9a51-0f3e8f2b7c10"),
        "reference": "SND-7K3Q-9F2M", "partner_id": uuid.UUID("a3d4e5f6-0718-4a2b-9c3d-4e5f60718293"),
        "partner_name": "Basra Women's Legal Aid", "service": "legal_aid", "level": "critical",
        "governorate": "basra", "created_at": datetime(2024, 3, 10, 9, 30, 2, tzinfo=timezone.utc),
        **extra,
    }


def escalation(**extra):
    return {
        "referral_id": None, "case_id": uuid.UUID("6b1f0c52-3c1e-4d8a-9a51-0f3e8f2b7c10"),
        "reference": "SND-7K3Q-9F2M", "level": "high", "service": "shelter", "governorate": "dhi_qar",
        "reason": "no_match", "step": 1, "reoffered_to": None,
        "escalated_at": datetime(2024, 3, 10, 9, 30, tzinfo=timezone.utc), **extra,
    }


def test_offer_has_the_standard_webhooks_shape_the_listed_fields_and_a_details_link(now):
    assert payloads.referral_offered(referral(), now, PUBLIC_URL) == {
        "type": "referral.offered",
        "timestamp": "2024-03-10T09:30:00+00:00",
        "data": {
            "referral_id": "1c7e2f0a-5b7d-4f3e-8c2a-6d9e0b1a2f34", "case_reference": "SND-7K3Q-9F2M",
            "risk_level": "critical", "service": "legal_aid", "governorate": "basra",
            "details_url": "https://sanad.example.org/partner/v1/referrals/1c7e2f0a-5b7d-4f3e-8c2a-6d9e0b1a2f34",
        },
    }


def test_details_link_does_not_double_a_trailing_slash(now):
    body = payloads.referral_offered(referral(), now, PUBLIC_URL + "/")
    assert body["data"]["details_url"].startswith("https://sanad.example.org/partner/v1/referrals/")


def test_offer_never_carries_the_narrative_a_name_or_a_phone_even_if_handed_them(now):
    body = payloads.referral_offered(referral(
        narrative=NARRATIVE, sealed_narrative="s1.k1.AAAA", name="Zainab Hussein", victim_name="Zainab Hussein",
        phone="+9647701234567", caller_phone="07701234567",
    ), now, PUBLIC_URL)
    text = json.dumps(body, ensure_ascii=False)
    for personal in (NARRATIVE, "s1.k1.AAAA", "Zainab", "7701234567"):
        assert personal not in text
    assert set(body["data"]) == {"referral_id", "case_reference", "risk_level", "service", "governorate",
                                 "details_url"}


def test_offer_does_not_reveal_internal_case_or_partner_ids(now):
    text = json.dumps(payloads.referral_offered(referral(), now, PUBLIC_URL))
    assert "6b1f0c52-3c1e-4d8a-9a51-0f3e8f2b7c10" not in text
    assert "a3d4e5f6-0718-4a2b-9c3d-4e5f60718293" not in text


def test_what_the_victim_consented_to_share_and_safe_contact_appear_only_through_a_disclosure(now):
    disclosure = Disclosure(shared={"first_name": "Zainab"}, safe_contact="Call after 4 pm; her sister answers.")
    body = payloads.referral_offered(referral(), now, PUBLIC_URL, disclosure)
    assert body["data"]["consented_to_share"] == {"first_name": "Zainab"}
    assert body["data"]["safe_contact"] == "Call after 4 pm; her sister answers."
    assert "consented_to_share" not in payloads.referral_offered(referral(), now, PUBLIC_URL)["data"]


def test_an_empty_disclosure_adds_nothing(now):
    body = payloads.referral_offered(referral(), now, PUBLIC_URL, Disclosure())
    assert "consented_to_share" not in body["data"] and "safe_contact" not in body["data"]


def test_the_page_to_supervisors_carries_only_reference_level_service_governorate_reason_and_step(now):
    body = payloads.referral_escalated(escalation(narrative=NARRATIVE, phone="07701234567"), now)
    assert body == {"type": "referral.escalated", "timestamp": "2024-03-10T09:30:00+00:00", "data": {
        "case_reference": "SND-7K3Q-9F2M", "risk_level": "high", "service": "shelter", "governorate": "dhi_qar",
        "reason": "no_match", "step": 1}}


def test_bodies_are_under_20_kb_even_with_huge_inputs_and_the_largest_disclosure(now):
    huge = "ب" * 50_000
    disclosure = Disclosure(shared={f"field_{n}_{huge}": huge for n in range(50)}, safe_contact=huge)
    for body in (payloads.referral_offered(referral(narrative=huge), now, PUBLIC_URL, disclosure),
                 payloads.referral_escalated(escalation(narrative=huge), now)):
        assert len(payloads.encode(body)) < payloads.MAX_BYTES == 20 * 1024


def test_encode_is_compact_utf8_json_and_refuses_a_body_over_20_kb():
    assert payloads.encode({"a": "ب"}) == '{"a":"ب"}'.encode()
    with pytest.raises(payloads.PayloadTooLarge):
        payloads.encode({"data": "x" * (20 * 1024)})
