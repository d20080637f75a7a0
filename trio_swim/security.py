"""Sealing packets and stream frames with the cluster's AES-GCM keys.

With ``Config.secret_keys`` set, every datagram (and every stream frame) a
member sends is *sealed*: encrypted and authenticated with AES-GCM under the
primary key of a :class:`Keyring`, and every one it receives must *open*
under one of the installed keys, or it is dropped.

What this protects
    The integrity and the confidentiality of every packet and frame: nobody
    without a key can read the messages, alter them, or make up new ones that
    a member accepts. The associated data (:func:`associated_data`) binds the
    protocol version and the cluster name, so a packet sealed for another
    cluster or another protocol version does not open either. What a packet
    claims (its sender, the updates it carries, a broadcast's origin) can
    therefore be trusted as far as key holders can be trusted.

What this does not protect
    - Traffic analysis: sizes (a sealed packet is its plaintext plus
      :data:`SEAL_OVERHEAD` bytes), timing, and who talks to whom stay
      visible to anyone on the network.
    - Replay. AES-GCM alone does not stop an attacker from capturing a sealed
      packet and sending it again later, from anywhere: it still opens. A
      replayed packet is an old, true statement from a key holder. The
      protocol's own rules bound its effect: a membership update carries an
      incarnation, and an old incarnation is stale once a newer one is known;
      a broadcast is delivered once per (origin, seq); an old ack answers a
      sequence number nobody waits for any more. A replayed ping is answered,
      and a replayed update may still be news to a member that has not yet
      heard anything newer: within that tolerance replay is possible.
    - A member that holds a key: it can forge anything (any sender, any
      update about any member). A key is a cluster-wide shared secret, not a
      member's identity.

Nonces and key lifetime
    Each seal draws a fresh 96-bit random nonce (``os.urandom`` by default;
    injectable for tests and deterministic simulations). Random nonces make a
    repeat under one key unlikely, not impossible, and the key is shared by
    the whole cluster, so what counts is the number of packets sealed under a
    key by *all* members together. NIST SP 800-38D caps random-nonce
    invocations at 2**32 per key; a cluster of 100 members sending ~20
    packets a second each reaches that in about 25 days. Rotate keys (see
    :class:`Keyring`) well before that.

Layout of a sealed packet or frame::

    1 byte SEALED_MARKER (0xc1) | 12-byte nonce | ciphertext | 16-byte tag

0xc1 is the one byte msgpack never uses ("never used" in the msgpack
specification; msgspec refuses to decode it), and a plaintext packet is a
msgpack array (first byte 0x90-0x9f, 0xdc or 0xdd): a receiver tells sealed
from plaintext packets by the first byte alone (:func:`is_sealed`).

This module is pure: no clock, no trio, no sockets, no ``random``.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEALED_MARKER: Final = 0xC1
"""First byte of every sealed packet or frame; msgpack never uses it."""
NONCE_BYTES: Final = 12
"""Length of the random AES-GCM nonce that follows the marker."""
TAG_BYTES: Final = 16
"""Length of the AES-GCM authentication tag that ends a sealed packet."""
SEAL_OVERHEAD: Final = 1 + NONCE_BYTES + TAG_BYTES
"""Bytes sealing adds to a plaintext: marker, nonce and tag (29)."""
KEY_SIZES: Final = (16, 24, 32)
"""Valid key lengths in bytes: AES-128, AES-192 and AES-256."""
MAX_KEYS: Final = 16
"""Most keys a keyring holds: each received packet may be tried against every key."""

_MARKER_BYTE: Final = bytes([SEALED_MARKER])


class UnknownKeyError(KeyError):
    """The key is not installed in the keyring (the message never shows the key)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "key not installed"


def check_key(key: object) -> bytes:
    """``key`` as bytes if it is a valid AES-GCM key; raises otherwise.

    ``TypeError`` if it is not bytes, ``ValueError`` naming its length if
    that is not one of :data:`KEY_SIZES`. The messages never show the key.
    """
    if not isinstance(key, bytes):
        raise TypeError(f"a key must be bytes, not {type(key).__name__}")
    if len(key) not in KEY_SIZES:
        raise ValueError(f"a key of {len(key)} bytes: must be 16, 24 or 32 bytes")
    return key


def decode_key(text: str) -> bytes:
    """The bytes of a key written in standard base64 (padding optional).

    Raises ``ValueError`` (never showing ``text``) if it is not base64; the
    length is not checked here (see :func:`check_key`).
    """
    stripped = text.strip()
    try:
        return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None


def is_sealed(data: bytes) -> bool:
    """Whether ``data`` starts like a sealed packet (the marker byte test only).

    A plaintext packet never does: it is a msgpack array. True says nothing
    about whether the packet opens.
    """
    return len(data) > 0 and data[0] == SEALED_MARKER


def associated_data(version: int, cluster: str) -> bytes:
    """The associated data that binds a sealed packet to a protocol version and cluster.

    One byte of version, one byte of the cluster name's UTF-8 length, then the
    name. The encoding is unambiguous, and stays so with a suffix appended:
    a caller may add context (say, a stream frame's direction and counter)
    after it. Raises ``ValueError`` if the version is outside 0..255 or the
    name is longer than 255 bytes.
    """
    name = cluster.encode()
    if not 0 <= version <= 255:
        raise ValueError(f"protocol version {version}: must be 0..255")
    if len(name) > 255:
        raise ValueError(f"cluster name of {len(name)} bytes: must be at most 255")
    return bytes([version, len(name)]) + name


class Keyring:
    """The cluster's AES-GCM keys: the primary seals, every installed key opens.

    ``Keyring(keys)`` installs ``keys`` in order; the first is the primary.
    Duplicates are installed once. Raises ``ValueError`` for an empty list,
    a key of the wrong length or more than :data:`MAX_KEYS` keys.

    Rotating a key without losing a packet, on every member::

        1. ring.install(new)  # everywhere first: all can open packets under new
        2. ring.use(new)      # then everywhere: all seal under new
        3. ring.remove(old)   # last, once nobody seals under old any more

    ``nonce(n)`` must return ``n`` fresh random bytes; the default,
    ``os.urandom``, is the right source in production. A test or a
    deterministic simulation may pass its own.

    The repr shows how many keys are installed, never the keys.
    """

    def __init__(
        self, keys: Sequence[bytes], *, nonce: Callable[[int], bytes] = os.urandom
    ) -> None:
        # (key, cipher) pairs, the primary first; ciphers are built once per key.
        self._entries: list[tuple[bytes, AESGCM]] = []
        self._nonce = nonce
        for key in keys:
            self.install(key)
        if not self._entries:
            raise ValueError("a keyring needs at least one key")

    def __repr__(self) -> str:
        count = len(self._entries)
        return f"<Keyring: {count} key{'s' if count != 1 else ''}>"

    def __len__(self) -> int:
        """How many keys are installed."""
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is installed."""
        return any(installed == key for installed, _ in self._entries)

    @property
    def keys(self) -> list[bytes]:
        """The installed keys, the primary first, then in the order installed."""
        return [key for key, _ in self._entries]

    @property
    def primary(self) -> bytes:
        """The key that seals."""
        return self._entries[0][0]

    def install(self, key: bytes) -> None:
        """Install ``key`` (after the others) so that packets sealed under it open.

        Installing a key already installed does nothing. Raises ``TypeError``
        or ``ValueError`` for an invalid key (see :func:`check_key`), and
        ``ValueError`` if :data:`MAX_KEYS` keys are installed already.
        """
        check_key(key)
        if key in self:
            return
        if len(self._entries) >= MAX_KEYS:
            raise ValueError(
                f"at most {MAX_KEYS} keys can be installed: "
                "each received packet may be tried against every key"
            )
        # Imported here: a member without keys never loads the library
        # (several MiB of resident memory).
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._entries.append((key, AESGCM(key)))

    def use(self, key: bytes) -> None:
        """Make the installed ``key`` the primary; raises :class:`UnknownKeyError` if it is not."""
        index = self._index(key)
        self._entries.insert(0, self._entries.pop(index))

    def remove(self, key: bytes) -> None:
        """Uninstall ``key``: packets sealed under it no longer open.

        Raises ``ValueError`` for the primary (make another key primary
        first) and :class:`UnknownKeyError` for a key not installed.
        """
        index = self._index(key)
        if index == 0:
            raise ValueError("the primary key cannot be removed: use() another key first")
        del self._entries[index]

    def seal(self, plaintext: bytes, associated_data: bytes) -> bytes:
        """Encrypt and authenticate ``plaintext`` under the primary key.

        Returns marker, nonce, ciphertext and tag: ``len(plaintext) +
        SEAL_OVERHEAD`` bytes. ``associated_data`` is authenticated, not sent:
        the receiver must pass the same bytes to :meth:`open`.
        """
        nonce = self._nonce(NONCE_BYTES)
        if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
            raise ValueError(f"the nonce source must return {NONCE_BYTES} bytes")
        sealed = self._entries[0][1].encrypt(nonce, plaintext, associated_data)
        return b"".join((_MARKER_BYTE, nonce, sealed))

    def open(self, data: bytes, associated_data: bytes) -> bytes | None:
        """The plaintext of a sealed packet, or None if no installed key opens it.

        Never raises on remote input: too short, empty, without the marker,
        altered anywhere, sealed under a key not installed or with other
        associated data all give None. Tries the primary key first, then the
        others in the order installed, so a packet costs at most one
        decryption per installed key.
        """
        if len(data) < SEAL_OVERHEAD or data[0] != SEALED_MARKER:
            return None
        from cryptography.exceptions import InvalidTag

        nonce = data[1 : 1 + NONCE_BYTES]
        sealed = data[1 + NONCE_BYTES :]
        for _, cipher in self._entries:
            try:
                return cipher.decrypt(nonce, sealed, associated_data)
            except (InvalidTag, ValueError, OverflowError):
                continue
        return None

    def _index(self, key: bytes) -> int:
        for index, (installed, _) in enumerate(self._entries):
            if installed == key:
                return index
        raise UnknownKeyError("no such key is installed")
