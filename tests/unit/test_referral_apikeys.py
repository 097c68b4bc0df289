"""Partner and staff API keys: a public id to find them, a keyed hash to check them."""
import os
import uuid
from argparse import Namespace

import pytest

from sanad.cli import CommandError
from services.referral import apikeys
from services.referral.commands import referral_staff_key

SERVER_KEY = os.urandom(32)


def test_a_generated_key_parses_back_to_its_id_and_verifies_against_its_stored_digest():
    key_id, token = apikeys.generate()
    parsed_id, secret = apikeys.parse(token)
    assert parsed_id == key_id and token.startswith(f"snd_{key_id}_")
    assert apikeys.verify(SERVER_KEY, key_id, secret, apikeys.digest(SERVER_KEY, key_id, secret))


def test_the_digest_is_not_the_secret_and_depends_on_the_server_key():
    key_id, token = apikeys.generate()
    _, secret = apikeys.parse(token)
    stored = apikeys.digest(SERVER_KEY, key_id, secret)
    assert secret not in stored
    assert not apikeys.verify(os.urandom(32), key_id, secret, stored), "a database dump alone verifies nothing"


def test_a_secret_moved_to_another_key_id_does_not_verify():
    key_id, token = apikeys.generate()
    other_id, _ = apikeys.generate()
    _, secret = apikeys.parse(token)
    assert not apikeys.verify(SERVER_KEY, other_id, secret, apikeys.digest(SERVER_KEY, key_id, secret))


def test_malformed_keys_and_headers_are_rejected_before_any_lookup():
    _, token = apikeys.generate()
    for bad in ("", "snd_", token + "x", token.replace("snd_", "sk_"), token.upper(), "snd_zz_" + "a" * 43, None):
        assert apikeys.parse(bad) is None
    assert apikeys.from_authorization(f"Bearer {token}") == apikeys.parse(token)
    assert apikeys.from_authorization(f"bearer {token}") == apikeys.parse(token)
    for header in (None, token, f"Basic {token}", "Bearer", f"Bearer {token} extra"):
        assert apikeys.from_authorization(header) is None


@pytest.mark.parametrize("role,partner_id", [("counsellor", None), ("supervisor", uuid.uuid4()),
                                             ("admin", uuid.uuid4())])
def test_a_counsellor_s_staff_key_names_their_organisation_and_no_other_role_s_does(role, partner_id):
    with pytest.raises(CommandError, match="partner-id"):
        referral_staff_key(Namespace(name="amira", role=role, partner_id=partner_id), config=None)
