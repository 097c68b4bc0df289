import base64
import json
import os
import stat

import pytest

from sanad import crypto
from sanad.crypto import KeyRing, Keys, SealError, ensure_keys, load_keys, write_keys

NARRATIVE = "He says he will send the photos to my father on Friday unless I pay 500 dollars."
CONTEXT = "case:3f1c2a9e-0000-4000-8000-000000000001:narrative"
OTHER_CONTEXT = "case:3f1c2a9e-0000-4000-8000-000000000002:narrative"


@pytest.fixture
def ring():
    return KeyRing.generate()


def _payload(sealed):
    fmt, key_id, payload = sealed.split(".", 2)
    return fmt, key_id, base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))


def _encode(fmt, key_id, raw):
    return f"{fmt}.{key_id}." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


# Sealing and opening

def test_sealed_value_opens_to_the_original_text_under_the_same_context(ring):
    assert ring.open(ring.seal(NARRATIVE, CONTEXT), CONTEXT) == NARRATIVE


def test_arabic_text_survives_a_seal_and_open(ring):
    narrative = "هددني بنشر الصور إذا لم أدفع"
    assert ring.open(ring.seal(narrative, CONTEXT), CONTEXT) == narrative


def test_sealed_value_names_the_format_and_the_primary_key_and_hides_the_plaintext(ring):
    sealed = ring.seal(NARRATIVE, CONTEXT)
    fmt, key_id, raw = _payload(sealed)
    assert (fmt, key_id) == ("s1", ring.primary)
    assert NARRATIVE not in sealed
    assert NARRATIVE.encode() not in raw
    # 12-byte nonce, the ciphertext as long as the plaintext, and a 16-byte GCM tag.
    assert len(raw) == 12 + len(NARRATIVE.encode()) + 16


def test_sealing_the_same_text_twice_gives_different_values(ring):
    assert ring.seal(NARRATIVE, CONTEXT) != ring.seal(NARRATIVE, CONTEXT)


def test_sealed_value_does_not_open_under_another_context(ring):
    sealed = ring.seal(NARRATIVE, CONTEXT)
    with pytest.raises(SealError):
        ring.open(sealed, OTHER_CONTEXT)


def test_sealed_value_does_not_open_with_an_unrelated_ring_holding_the_same_key_id(ring):
    stranger = KeyRing.generate()
    assert stranger.primary == ring.primary
    with pytest.raises(SealError):
        stranger.open(ring.seal(NARRATIVE, CONTEXT), CONTEXT)


def test_sealed_value_under_an_unknown_key_id_raises_seal_error(ring):
    fmt, _, raw = _payload(ring.seal(NARRATIVE, CONTEXT))
    with pytest.raises(SealError):
        ring.open(_encode(fmt, "k9-dead", raw), CONTEXT)


@pytest.mark.parametrize("position", [0, 11, 12, -17, -1], ids=["nonce-first", "nonce-last", "ciphertext-first",
                                                              "ciphertext-last", "tag-last"])
def test_flipping_any_bit_of_a_sealed_value_makes_it_refuse_to_open(ring, position):
    fmt, key_id, raw = _payload(ring.seal(NARRATIVE, CONTEXT))
    tampered = bytearray(raw)
    tampered[position] ^= 0x01
    with pytest.raises(SealError):
        ring.open(_encode(fmt, key_id, bytes(tampered)), CONTEXT)


def test_truncated_sealed_value_refuses_to_open(ring):
    fmt, key_id, raw = _payload(ring.seal(NARRATIVE, CONTEXT))
    with pytest.raises(SealError):
        ring.open(_encode(fmt, key_id, raw[:-1]), CONTEXT)


@pytest.mark.parametrize("sealed", ["", "plaintext", "s1.k1", "s2.k1.AAAA", "s1.k1.!!not-base64!!", None],
                         ids=["empty", "no-dots", "no-payload", "unknown-format", "bad-base64", "none"])
def test_malformed_sealed_values_raise_seal_error_only(ring, sealed):
    with pytest.raises(SealError):
        ring.open(sealed, CONTEXT)


def test_value_sealed_in_an_unknown_format_does_not_open_even_if_the_rest_is_valid(ring):
    _, key_id, raw = _payload(ring.seal(NARRATIVE, CONTEXT))
    with pytest.raises(SealError):
        ring.open(_encode("s2", key_id, raw), CONTEXT)


def test_optional_seal_and_open_pass_none_through_and_seal_anything_else(ring):
    assert ring.seal_optional(None, CONTEXT) is None
    assert ring.open_optional(None, CONTEXT) is None
    sealed = ring.seal_optional("07701234567", CONTEXT)
    assert sealed != "07701234567"
    assert ring.open_optional(sealed, CONTEXT) == "07701234567"


# Rotation

def test_rotated_ring_seals_with_a_new_primary_and_still_opens_values_sealed_before(ring):
    old_sealed = ring.seal(NARRATIVE, CONTEXT)
    rotated = ring.rotated()

    assert rotated.primary != ring.primary
    assert set(rotated.keys) == set(ring.keys) | {rotated.primary}
    assert rotated.keys[ring.primary] == ring.keys[ring.primary]
    assert rotated.open(old_sealed, CONTEXT) == NARRATIVE
    new_sealed = rotated.seal(NARRATIVE, CONTEXT)
    assert new_sealed.split(".")[1] == rotated.primary
    assert rotated.open(new_sealed, CONTEXT) == NARRATIVE


def test_value_sealed_after_rotation_does_not_open_with_the_ring_from_before(ring):
    rotated = ring.rotated()
    with pytest.raises(SealError):
        ring.open(rotated.seal(NARRATIVE, CONTEXT), CONTEXT)


def test_rotating_twice_keeps_every_older_key_opening(ring):
    first = ring.seal("first", CONTEXT)
    once = ring.rotated()
    second = once.seal("second", CONTEXT)
    twice = once.rotated()

    assert len({ring.primary, once.primary, twice.primary}) == 3
    assert twice.open(first, CONTEXT) == "first"
    assert twice.open(second, CONTEXT) == "second"


def test_needs_reseal_is_true_only_for_values_sealed_under_an_older_key(ring):
    old_sealed = ring.seal(NARRATIVE, CONTEXT)
    rotated = ring.rotated()
    assert not ring.needs_reseal(old_sealed)
    assert rotated.needs_reseal(old_sealed)
    assert not rotated.needs_reseal(rotated.seal(NARRATIVE, CONTEXT))


# JSON form of the key file

def test_key_ring_json_round_trip_keeps_the_primary_and_every_key(ring):
    rotated = ring.rotated()
    restored = KeyRing.from_json(json.loads(json.dumps(rotated.to_json())))
    assert restored == rotated
    assert restored.open(ring.seal(NARRATIVE, CONTEXT), CONTEXT) == NARRATIVE


def test_keys_json_round_trip_keeps_both_rings_and_the_lookup_key():
    keys = Keys.generate()
    restored = Keys.from_json(json.loads(json.dumps(keys.to_json())))
    assert restored == keys
    assert restored.transport.open(keys.transport.seal(NARRATIVE, CONTEXT), CONTEXT) == NARRATIVE
    assert restored.lookup_hash("07701234567") == keys.lookup_hash("07701234567")


def test_keys_json_holds_no_raw_bytes_and_names_both_rings():
    document = Keys.generate().to_json()
    assert set(document) == {"data", "transport", "lookup"}
    json.dumps(document)  # raises TypeError if any bytes were left in


def test_key_ring_json_whose_primary_is_not_among_its_keys_is_refused(ring):
    document = ring.to_json()
    document["primary"] = "k7"
    with pytest.raises(ValueError, match="primary"):
        KeyRing.from_json(document)


def test_key_ring_json_with_a_key_shorter_than_256_bits_is_refused(ring):
    document = ring.to_json()
    document["keys"][ring.primary] = base64.urlsafe_b64encode(os.urandom(16)).decode()
    with pytest.raises(ValueError, match="256 bits"):
        KeyRing.from_json(document)


def test_data_and_transport_rings_are_independent_keys():
    keys = Keys.generate()
    with pytest.raises(SealError):
        keys.data.open(keys.transport.seal(NARRATIVE, CONTEXT), CONTEXT)


# Lookup hashes

def test_lookup_hash_is_stable_for_equal_values_and_differs_for_different_ones():
    keys = Keys.generate()
    assert keys.lookup_hash("07701234567") == keys.lookup_hash("07701234567")
    assert keys.lookup_hash("07701234567") != keys.lookup_hash("07701234568")


def test_lookup_hash_depends_on_the_lookup_key():
    one, other = Keys.generate(), Keys.generate()
    assert one.lookup_hash("07701234567") != other.lookup_hash("07701234567")


def test_lookup_hash_is_hmac_sha256_of_the_value_under_the_lookup_key_not_a_bare_hash():
    import hashlib
    import hmac
    keys = Keys.generate()
    expected = hmac.new(keys.lookup, b"07701234567", hashlib.sha256).hexdigest()
    assert keys.lookup_hash("07701234567") == expected
    assert keys.lookup_hash("07701234567") != hashlib.sha256(b"07701234567").hexdigest()


def test_lookup_hash_survives_a_key_file_round_trip(tmp_path):
    keys = Keys.generate()
    write_keys(tmp_path / "keys.json", keys)
    assert load_keys(tmp_path / "keys.json").lookup_hash("07701234567") == keys.lookup_hash("07701234567")


# The key file

def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_write_keys_creates_the_file_with_mode_0600_and_its_missing_directory(tmp_path):
    path = tmp_path / "etc" / "sanad" / "keys.json"
    write_keys(path, Keys.generate())
    assert _mode(path) == 0o600


def test_write_keys_creates_mode_0600_even_under_a_permissive_umask(tmp_path):
    previous = os.umask(0)
    try:
        write_keys(tmp_path / "keys.json", Keys.generate())
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "keys.json") == 0o600


def test_write_keys_over_a_world_readable_file_leaves_it_0600(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text("{}")
    path.chmod(0o644)
    write_keys(path, Keys.generate())
    assert _mode(path) == 0o600


@pytest.mark.parametrize("stale_name", ["keys.tmp", ".keys.json.tmp", "keys.json.tmp"])
def test_write_keys_is_0600_even_when_a_stale_world_readable_temporary_file_lies_beside_it(tmp_path, stale_name):
    path = tmp_path / "keys.json"
    stale = tmp_path / stale_name
    stale.write_text("left over")
    stale.chmod(0o644)
    write_keys(path, Keys.generate())
    assert _mode(path) == 0o600
    assert stale.read_text() == "left over"


def test_write_keys_leaves_no_temporary_file_behind(tmp_path):
    write_keys(tmp_path / "keys.json", Keys.generate())
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]


def test_write_keys_failing_midway_leaves_the_previous_key_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / "keys.json"
    original = Keys.generate()
    write_keys(path, original)
    before = path.read_bytes()

    def dump_then_fail(obj, handle, **kwargs):
        handle.write('{"data": ')
        raise OSError("disk full")

    monkeypatch.setattr(crypto.json, "dump", dump_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_keys(path, Keys.generate())

    assert path.read_bytes() == before
    assert load_keys(path) == original
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]


def test_load_keys_returns_what_write_keys_wrote(tmp_path):
    keys = Keys.generate()
    write_keys(tmp_path / "keys.json", keys)
    assert load_keys(tmp_path / "keys.json") == keys


def test_load_keys_of_a_missing_file_says_how_to_create_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="sanad keys init"):
        load_keys(tmp_path / "keys.json")


def test_ensure_keys_creates_a_0600_key_file_when_there_is_none(tmp_path):
    path = tmp_path / "keys.json"
    assert ensure_keys(path) is True
    assert _mode(path) == 0o600
    load_keys(path)


def test_ensure_keys_is_idempotent_and_never_replaces_existing_keys(tmp_path):
    path = tmp_path / "keys.json"
    ensure_keys(path)
    first = path.read_bytes()
    assert ensure_keys(path) is False
    assert ensure_keys(path) is False
    assert path.read_bytes() == first
