"""The keyring: sealing and opening packets, rotation, and every way opening fails."""

from __future__ import annotations

import base64

import msgspec
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_swim.security import (
    KEY_SIZES,
    MAX_KEYS,
    NONCE_BYTES,
    SEAL_OVERHEAD,
    SEALED_MARKER,
    TAG_BYTES,
    Keyring,
    UnknownKeyError,
    associated_data,
    check_key,
    decode_key,
    is_sealed,
)
from trio_swim.wire import (
    PROTOCOL_VERSION,
    Codec,
    Message,
)

from strategies import messages

KEY_A = bytes(range(16))
KEY_B = bytes(range(100, 124))
KEY_C = bytes(range(200, 232))
AD = associated_data(PROTOCOL_VERSION, "blue")

keys_st = st.sampled_from(KEY_SIZES).flatmap(lambda n: st.binary(min_size=n, max_size=n))
plaintexts = st.binary(max_size=2000)
ads = st.binary(max_size=100)


@given(keys_st, plaintexts, ads)
def test_round_trip(key: bytes, plaintext: bytes, ad: bytes) -> None:
    ring = Keyring([key])
    sealed = ring.seal(plaintext, ad)
    assert ring.open(sealed, ad) == plaintext
    assert is_sealed(sealed)


@given(plaintexts)
def test_the_overhead_is_exact(plaintext: bytes) -> None:
    assert SEAL_OVERHEAD == 1 + NONCE_BYTES + TAG_BYTES == 29
    assert len(Keyring([KEY_A]).seal(plaintext, AD)) == len(plaintext) + SEAL_OVERHEAD


def test_the_layout_is_marker_nonce_ciphertext_tag() -> None:
    # GCM specification, test case 2: zero key, zero IV, one zero block.
    zero = bytes(16)
    ring = Keyring([zero], nonce=bytes)
    sealed = ring.seal(zero, b"")
    assert sealed == bytes([SEALED_MARKER]) + bytes(12) + bytes.fromhex(
        "0388dace60b6a392f328c2b971b2fe78ab6e47d42cec13bdf53a67b21257bddf"
    )
    nonce = bytes(range(12))
    ring = Keyring([KEY_C], nonce=lambda n: nonce)
    assert ring.seal(b"hello", AD) == b"\xc1" + nonce + AESGCM(KEY_C).encrypt(nonce, b"hello", AD)


def test_the_injected_nonce_source_is_used() -> None:
    calls: list[int] = []
    counter = iter(range(1, 1000))

    def source(n: int) -> bytes:
        calls.append(n)
        return next(counter).to_bytes(n, "big")

    ring = Keyring([KEY_A], nonce=source)
    first, second = ring.seal(b"x", AD), ring.seal(b"x", AD)
    assert calls == [NONCE_BYTES, NONCE_BYTES]
    assert first[1:13] == (1).to_bytes(12, "big")
    assert second[1:13] == (2).to_bytes(12, "big")
    assert ring.open(first, AD) == ring.open(second, AD) == b"x"


@pytest.mark.parametrize("nonce", [b"", bytes(11), bytes(13), "x" * 12])
def test_a_nonce_source_of_the_wrong_size_is_refused(nonce: object) -> None:
    ring = Keyring([KEY_A], nonce=lambda n: nonce)  # type: ignore[arg-type, return-value]
    with pytest.raises(ValueError, match="12 bytes"):
        ring.seal(b"x", AD)


def test_the_real_nonce_source_gives_a_new_nonce_per_packet() -> None:
    ring = Keyring([KEY_A])
    sealed = [ring.seal(b"same plaintext", AD) for _ in range(2000)]
    assert len({s[1:13] for s in sealed}) == len(sealed)
    assert len(set(sealed)) == len(sealed)


# ------------------------------------------------------------ failures


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_random_bytes_never_open(data: bytes) -> None:
    ring = Keyring([KEY_A, KEY_B, KEY_C])
    assert ring.open(data, AD) is None
    assert ring.open(bytes([SEALED_MARKER]) + data, AD) is None


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\xc1" * (SEAL_OVERHEAD - 1), bytes(100)])
def test_short_empty_and_unmarked_data_never_open(data: bytes) -> None:
    assert Keyring([KEY_A]).open(data, AD) is None


@settings(max_examples=300)
@given(plaintexts, st.data())
def test_a_bit_flip_anywhere_stops_it_opening(plaintext: bytes, data: st.DataObject) -> None:
    ring = Keyring([KEY_A, KEY_B])
    sealed = bytearray(ring.seal(plaintext, AD))
    flips = data.draw(st.sets(st.integers(0, len(sealed) * 8 - 1), min_size=1, max_size=4))
    for bit in flips:
        sealed[bit // 8] ^= 1 << (bit % 8)
    assert ring.open(bytes(sealed), AD) is None


@given(plaintexts, st.data())
def test_truncated_or_extended_packets_do_not_open(plaintext: bytes, data: st.DataObject) -> None:
    ring = Keyring([KEY_A])
    sealed = ring.seal(plaintext, AD)
    cut = data.draw(st.integers(0, len(sealed) - 1))
    assert ring.open(sealed[:cut], AD) is None
    assert ring.open(sealed + data.draw(st.binary(min_size=1, max_size=20)), AD) is None


@given(keys_st, keys_st, plaintexts)
def test_a_packet_sealed_under_another_key_does_not_open(
    ours: bytes, theirs: bytes, plaintext: bytes
) -> None:
    if ours == theirs:
        return
    assert Keyring([ours]).open(Keyring([theirs]).seal(plaintext, AD), AD) is None


@given(plaintexts, ads, ads)
def test_other_associated_data_does_not_open(plaintext: bytes, ad: bytes, other: bytes) -> None:
    if ad == other:
        return
    ring = Keyring([KEY_A])
    assert ring.open(ring.seal(plaintext, ad), other) is None


def test_another_cluster_or_version_does_not_open() -> None:
    ring = Keyring([KEY_A])
    sealed = ring.seal(b"packet", associated_data(1, "blue"))
    assert ring.open(sealed, associated_data(1, "blue")) == b"packet"
    for version, cluster in [(2, "blue"), (1, "red"), (1, "blue2"), (1, "Blue"), (0, "blue")]:
        assert ring.open(sealed, associated_data(version, cluster)) is None


# ---------------------------------------------------- associated data


@given(st.integers(0, 255), st.text(max_size=64), st.integers(0, 255), st.text(max_size=64))
def test_associated_data_is_unambiguous(v1: int, c1: str, v2: int, c2: str) -> None:
    assert (associated_data(v1, c1) == associated_data(v2, c2)) == ((v1, c1) == (v2, c2))


def test_associated_data_encoding() -> None:
    assert associated_data(1, "blue") == b"\x01\x04blue"
    assert associated_data(3, "é") == b"\x03\x02\xc3\xa9"
    assert associated_data(0, "x" * 255)[1] == 255
    with pytest.raises(ValueError, match="256"):
        associated_data(256, "blue")
    with pytest.raises(ValueError, match="-1"):
        associated_data(-1, "blue")
    with pytest.raises(ValueError, match="256 bytes"):
        associated_data(1, "x" * 256)


# ------------------------------------------------- plaintext vs sealed

addresses = st.sampled_from(["127.0.0.1:1", "[::1]:2", "10.1.2.3:65535", "x" * 64])
message_st = messages(
    addresses, st.integers(0, 2**63 - 1), payload_size=300, sync_size=20, announce=True
)
clusters = st.text(min_size=1, max_size=64).filter(lambda c: len(c.encode()) <= 64)


@settings(max_examples=300)
@given(clusters, addresses, st.lists(message_st, max_size=40))
def test_no_plaintext_packet_looks_sealed(
    cluster: str, sender: str, messages: list[Message]
) -> None:
    plaintext = Codec(cluster, 65_000).encode(sender, messages)
    assert not is_sealed(plaintext)
    assert is_sealed(Keyring([KEY_A]).seal(plaintext, AD))


def test_the_marker_is_the_byte_msgpack_never_uses() -> None:
    with pytest.raises(msgspec.DecodeError):
        msgspec.msgpack.decode(bytes([SEALED_MARKER]))
    array_starts = {*range(0x90, 0xA0), 0xDC, 0xDD}
    assert SEALED_MARKER not in array_starts
    assert not is_sealed(b"")
    assert is_sealed(b"\xc1")


# ------------------------------------------------------------ rotation


def test_rotation_keeps_old_packets_opening_until_the_old_key_is_removed() -> None:
    ring = Keyring([KEY_A])
    old = ring.seal(b"sealed under A", AD)
    ring.install(KEY_B)
    assert ring.primary == KEY_A, "installing does not change the primary"
    ring.use(KEY_B)
    assert (ring.primary, ring.keys) == (KEY_B, [KEY_B, KEY_A])
    assert ring.open(old, AD) == b"sealed under A"
    new = ring.seal(b"sealed under B", AD)
    assert Keyring([KEY_A]).open(new, AD) is None, "the new primary seals"
    assert Keyring([KEY_B]).open(new, AD) == b"sealed under B"
    ring.remove(KEY_A)
    assert ring.keys == [KEY_B]
    assert ring.open(old, AD) is None
    assert ring.open(new, AD) == b"sealed under B"


def test_any_installed_key_opens() -> None:
    ring = Keyring([KEY_A, KEY_B, KEY_C])
    for key in (KEY_A, KEY_B, KEY_C):
        assert ring.open(Keyring([key]).seal(b"p", AD), AD) == b"p"


def test_the_primary_cannot_be_removed() -> None:
    ring = Keyring([KEY_A, KEY_B])
    with pytest.raises(ValueError, match="primary"):
        ring.remove(KEY_A)
    assert ring.keys == [KEY_A, KEY_B]
    ring.use(KEY_B)
    ring.remove(KEY_A)
    with pytest.raises(ValueError, match="primary"):
        ring.remove(KEY_B)


def test_using_or_removing_a_key_not_installed_is_a_key_error() -> None:
    ring = Keyring([KEY_A])
    for operation in (ring.use, ring.remove):
        with pytest.raises(KeyError) as info:
            operation(KEY_B)
        assert isinstance(info.value, UnknownKeyError)
        assert str(info.value) == "no such key is installed"
    assert ring.keys == [KEY_A]


def test_install_is_idempotent_and_keeps_the_order() -> None:
    ring = Keyring([KEY_A, KEY_B, KEY_A])
    assert ring.keys == [KEY_A, KEY_B]
    ring.install(KEY_B)
    ring.install(KEY_C)
    ring.install(KEY_A)
    assert ring.keys == [KEY_A, KEY_B, KEY_C]
    ring.use(KEY_C)
    assert ring.keys == [KEY_C, KEY_A, KEY_B]
    assert len(ring) == 3
    assert KEY_B in ring
    assert bytes(16) not in ring


def test_at_most_max_keys() -> None:
    keys = [bytes([i]) * 16 for i in range(MAX_KEYS)]
    ring = Keyring(keys)
    ring.install(keys[3])  # already installed: still a no-op when full
    with pytest.raises(ValueError, match=f"at most {MAX_KEYS} keys.*tried against every key"):
        ring.install(b"\xff" * 16)
    with pytest.raises(ValueError, match=f"at most {MAX_KEYS}"):
        Keyring([*keys, b"\xff" * 16])
    assert len(ring) == MAX_KEYS


def test_a_keyring_needs_a_key() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        Keyring([])


@pytest.mark.parametrize("length", [n for n in range(65) if n not in KEY_SIZES])
def test_keys_of_other_lengths_are_refused(length: int) -> None:
    key = b"\xab" * length
    with pytest.raises(ValueError, match=f"^a key of {length} bytes: must be 16, 24 or 32 bytes$"):
        Keyring([key])
    ring = Keyring([KEY_A])
    with pytest.raises(ValueError, match=f"{length} bytes"):
        ring.install(key)
    assert ring.keys == [KEY_A]


@pytest.mark.parametrize("key", ["k" * 16, bytearray(16), None])
def test_keys_must_be_bytes(key: object) -> None:
    with pytest.raises(TypeError, match="must be bytes"):
        Keyring([key])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="must be bytes"):
        check_key(key)


def test_no_message_or_repr_shows_a_key() -> None:
    secret = b"\x11" * 16
    ring = Keyring([secret, KEY_B])
    texts = [repr(ring), str(ring)]
    with pytest.raises(ValueError, match="primary") as primary:
        ring.remove(secret)
    with pytest.raises(UnknownKeyError) as unknown:
        ring.use(KEY_C)
    with pytest.raises(ValueError, match="10 bytes") as bad_length:
        ring.install(secret[:10])
    for error in (primary.value, unknown.value, bad_length.value):
        texts += [str(error), repr(error)]
    for key in (secret, KEY_B, KEY_C):
        for form in (repr(key), key.hex(), base64.b64encode(key).decode()):
            assert all(form not in text for text in texts)
    assert repr(ring) == "<Keyring: 2 keys>"


def test_keys_decode_from_base64_with_or_without_padding() -> None:
    for key in (KEY_A, KEY_B, KEY_C):
        text = base64.b64encode(key).decode()
        assert decode_key(text) == key
        assert decode_key(text.rstrip("=")) == key
        assert decode_key(f"  {text}\n") == key
    for bad in ("not base64!", "A", "AAAAA", "-_-_", "ñ", "AA=A"):
        with pytest.raises(ValueError, match=r"^not base64$"):
            decode_key(bad)
