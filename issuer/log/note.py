"""C2SP signed notes and tlog checkpoints, Ed25519 only.

Specifications: C2SP ``signed-note`` v1.0.0 (https://c2sp.org/signed-note@v1.0.0) and C2SP
``tlog-checkpoint`` v1.0.0 (https://c2sp.org/tlog-checkpoint@v1.0.0). Where the specs leave
room, this module follows golang.org/x/mod/sumdb/note, whose test cases are among the
vectors in ``tests/fixtures/vectors/``. Every failure raises :class:`NoteError`.

Conventions: "base64" is the standard alphabet with ``=`` padding (RFC 4648 section 4). This
module accepts only the canonical encoding: the encoding of the decoded bytes must give back
the same string, so padding bits must be zero. ``||`` means concatenation. Text is UTF-8.

Signed note (signed-note section "Format")
    ``note = text || "\\n" || signature-line+``

    * The whole note must be valid UTF-8 and must not contain code points below U+0020 other
      than U+000A (newline). U+007F and above are allowed.
    * ``text`` ends with ``"\\n"`` and may contain empty lines. A reader splits the note at
      the *last* ``"\\n\\n"`` in it: ``text`` runs up to and including the first of those two
      newlines, and the signature block is everything after them. Signature lines are never
      empty, so this split is always the one the signer meant.
    * ``signature-line = U+2014 || U+0020 || name || U+0020 || base64(key_id || sig) || "\\n"``
      (U+2014 EM DASH is the three bytes ``E2 80 94``). ``key_id`` is 4 bytes and must be
      followed by at least 1 byte of signature. The signature block must be non-empty, made
      only of such lines, and end in ``"\\n"``. At most 100 signature lines are read
      (golang.org/x/mod's limit; the spec requires at least 16).
    * Key name: non-empty, no Unicode white space (``str.isspace``), no ``+``, and, here,
      no control characters.

Ed25519 signatures (signature type ``0x01``)
    * ``sig`` = the 64-byte RFC 8032 Ed25519 signature over the UTF-8 bytes of ``text``
      (including its final newline, excluding the blank line).
    * ``key_id = SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4]``, written big-endian
      in the signature and as 8 lowercase hex digits in key strings (signed-note "Verifier
      keys" says lowercase; golang.org/x/mod would also read uppercase, this module does not).

Key strings
    * Verifier key: ``name + "+" + hex8(key_id) + "+" + base64(0x01 || public key)``.
      Reading it recomputes the key ID over the decoded bytes first (as golang.org/x/mod
      does), then requires the type byte ``0x01`` and exactly 32 key bytes.
    * Signer key (golang.org/x/mod convention, not part of C2SP):
      ``"PRIVATE+KEY+" + name + "+" + hex8(key_id) + "+" + base64(0x01 || 32-byte seed)``,
      where ``key_id`` is computed from the *public* key derived from the seed.

Opening a note (signed-note section "Signatures")
    A signature line is *known* when its (name, key ID) pair equals a trusted verifier's.
    Lines from unknown keys are kept as unverified and otherwise ignored, even if the name or
    the key ID alone matches. Every known line must verify, else the whole note is refused
    (the spec's SHOULD). The note is refused, with :class:`UnverifiedNoteError`, unless at
    least one known line verified. A known key is reported once however often it signed; an
    unknown key's identical signatures are reported once.

Checkpoint note text (tlog-checkpoint section "Note text")
    ``origin "\\n" size "\\n" base64(root_hash) "\\n" (extension "\\n")*``

    * ``origin``: non-empty. The log's key name SHOULD equal it (sum.golang.org does not).
    * ``size``: ASCII decimal, no leading zeros (``0`` for the empty tree), at most
      2**64 - 1.
    * ``root_hash``: the RFC 6962 SHA-256 Merkle tree head, 32 bytes.
    * extension lines: opaque and optional. Each must be non-empty.

    ``parse_checkpoint(..., strict=False)`` relaxes the last two rules, as
    transparency-dev/formats does: any non-empty root hash and empty extension lines are
    accepted. Signing always applies the strict rules.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

__all__ = [
    "ALG_ED25519",
    "HASH_SIZE",
    "MAX_SIGNATURES",
    "MAX_TREE_SIZE",
    "SIGNATURE_PREFIX",
    "Checkpoint",
    "Note",
    "NoteError",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "UnverifiedNoteError",
    "ed25519_key_id",
    "open_note",
    "parse_checkpoint",
    "parse_signer_key",
    "sign_checkpoint",
    "sign_note",
    "verify_checkpoint",
]

#: Signature type byte of Ed25519 in key IDs and key strings (signed-note "Signature types").
ALG_ED25519 = 0x01
#: EM DASH + SPACE, the start of every signature line.
SIGNATURE_PREFIX = "\u2014 "
#: Most signature lines read from one note (golang.org/x/mod's cap; the spec's floor is 16).
MAX_SIGNATURES = 100
#: Tree sizes are uint64 in every checkpoint implementation the vectors come from.
MAX_TREE_SIZE = 2**64 - 1
#: SHA-256 root hash length (RFC 6962 Merkle tree).
HASH_SIZE = 32

_KEY_ID_SIZE = 4
_ED25519_KEY_SIZE = 32
_ED25519_SIG_SIZE = 64
_SIGNER_PREFIX = "PRIVATE+KEY+"
_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}")
# [0-9] rather than \d: \d also matches non-ASCII digits such as U+0661.
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


class NoteError(ValueError):
    """A note, key string or checkpoint is malformed, or a signature does not verify."""

    def __init__(self, message: str) -> None:
        # One line, always: messages end up in logs and JSON error bodies.
        super().__init__(" ".join(message.split()))


class UnverifiedNoteError(NoteError):
    """The note is well formed but no trusted key signed it (golang.org/x/mod's equivalent).

    ``note`` holds the parsed text and signatures, all unverified: for diagnostics only
    (which keys signed it?), its text MUST NOT be trusted.
    """

    def __init__(self, note: Note) -> None:
        super().__init__("note has no verifiable signatures")
        self.note = note


# --- encodings -------------------------------------------------------------------------------


def _b64encode(data: bytes) -> str:
    """Standard base64 with padding."""
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str, what: str) -> bytes:
    """Strict, canonical standard base64; raises NoteError naming ``what``."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII input
        raise NoteError(f"{what} is not standard base64") from None
    # Canonical only, so that each signature has exactly one spelling in a note.
    if _b64encode(raw) != text:
        raise NoteError(f"{what} is not canonical base64")
    return raw


def _utf8(text: str, what: str) -> bytes:
    """UTF-8 bytes of ``text``; a lone surrogate cannot be encoded and is refused."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteError(f"{what} is not valid UTF-8") from None


def _check_name(name: str, what: str = "key name") -> None:
    """signed-note "Format": non-empty, no Unicode space, no '+'; also no control character."""
    if not isinstance(name, str) or not name:
        raise NoteError(f"{what} is empty")
    if "+" in name:
        raise NoteError(f"{what} contains '+'")
    # Control characters could never appear in a valid signature line, so a key named with
    # one is a configuration mistake worth reporting early.
    if any(ch.isspace() or ch < " " for ch in name):
        raise NoteError(f"{what} contains white space or a control character")
    _utf8(name, what)


def _check_text(text: str, what: str) -> bytes:
    """The note-text rules shared by signing, opening and checkpoint parsing; returns UTF-8."""
    if not isinstance(text, str):
        raise NoteError(f"{what} must be a string")
    data = _utf8(text, what)
    if _CONTROL.search(text):
        raise NoteError(f"{what} contains a control character other than newline")
    if not text.endswith("\n"):
        raise NoteError(f"{what} does not end with a newline")
    return data


def ed25519_key_id(name: str, public_key: bytes) -> bytes:
    """``SHA-256(name || 0x0A || 0x01 || public_key)[:4]`` (signed-note "Ed25519 signatures")."""
    return _key_id(name, bytes([ALG_ED25519]) + public_key)


def _key_id(name: str, typed_key: bytes) -> bytes:
    """Key ID over ``type byte || key material`` exactly as it appears in a key string."""
    return hashlib.sha256(_utf8(name, "key name") + b"\n" + typed_key).digest()[:_KEY_ID_SIZE]


def _split_key(key: str, what: str) -> tuple[str, bytes, bytes]:
    """Split ``name+hex8+base64`` into (name, key ID, decoded typed key); checks syntax only."""
    if not isinstance(key, str):
        raise NoteError(f"{what} must be a string")
    # The base64 part may itself contain '+', so split only twice, from the left.
    name, sep1, rest = key.partition("+")
    key_id_hex, sep2, key_b64 = rest.partition("+")
    if not sep1 or not sep2:
        raise NoteError(f"{what} is not of the form <name>+<key id>+<key>")
    _check_name(name, f"{what} name")
    if not _HEX_KEY_ID.fullmatch(key_id_hex):
        raise NoteError(f"{what} ID is not 8 lowercase hex digits")
    typed_key = _b64decode(key_b64, what)
    if not typed_key:
        raise NoteError(f"{what} is empty")
    return name, bytes.fromhex(key_id_hex), typed_key


def _ed25519_material(typed_key: bytes, what: str) -> bytes:
    """The 32 key bytes after the 0x01 type byte."""
    if typed_key[0] != ALG_ED25519:
        raise NoteError(f"{what} has unsupported signature type 0x{typed_key[0]:02x}")
    if len(typed_key) != 1 + _ED25519_KEY_SIZE:
        raise NoteError(f"{what} is not a 32-byte Ed25519 key")
    return typed_key[1:]


# --- keys ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted Ed25519 note key: a name and a 32-byte public key."""

    name: str
    public_key: bytes
    key_id: bytes = field(init=False, repr=False)
    _key: ed25519.Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != _ED25519_KEY_SIZE:
            raise NoteError("Ed25519 public key must be 32 bytes")
        try:
            key = ed25519.Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError:
            raise NoteError("not an Ed25519 public key") from None
        # Frozen dataclass: derived fields are set once, here.
        object.__setattr__(self, "key_id", ed25519_key_id(self.name, self.public_key))
        object.__setattr__(self, "_key", key)

    @classmethod
    def from_key(cls, vkey: str) -> NoteVerifier:
        """Parse ``<name>+<hex8 key id>+<base64(0x01 || public key)>``."""
        name, key_id, typed_key = _split_key(vkey, "verifier key")
        # Same order as golang.org/x/mod: the ID covers whatever bytes were given.
        if _key_id(name, typed_key) != key_id:
            raise NoteError("verifier key ID does not match its name and key")
        return cls(name, _ed25519_material(typed_key, "verifier key"))

    @classmethod
    def from_public_key(cls, name: str, key: ed25519.Ed25519PublicKey) -> NoteVerifier:
        """Wrap a ``cryptography`` Ed25519 public key."""
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(name, raw)

    def verifier_key(self) -> str:
        """The ``<name>+<hex8 key id>+<base64(0x01 || public key)>`` string."""
        typed = bytes([ALG_ED25519]) + self.public_key
        return f"{self.name}+{self.key_id.hex()}+{_b64encode(typed)}"

    def verify(self, signature: bytes, text: bytes) -> bool:
        """Whether ``signature`` (64 bytes, without key ID) is this key's over ``text``."""
        if len(signature) != _ED25519_SIG_SIZE:
            return False
        try:
            self._key.verify(signature, text)
        except InvalidSignature:
            return False
        return True


class NoteSigner:
    """An Ed25519 note signing key with its name. Compares by name and key; never prints it."""

    __slots__ = ("_key", "_name", "_public_key", "_key_id", "_seed")

    def __init__(self, name: str, key: bytes | ed25519.Ed25519PrivateKey) -> None:
        """``key`` is a 32-byte RFC 8032 seed or a ``cryptography`` private key."""
        _check_name(name)
        if isinstance(key, ed25519.Ed25519PrivateKey):
            private = key
        elif isinstance(key, bytes) and len(key) == _ED25519_KEY_SIZE:
            private = ed25519.Ed25519PrivateKey.from_private_bytes(key)
        else:
            raise NoteError("Ed25519 signer key must be a 32-byte seed or Ed25519PrivateKey")
        self._key = private
        self._name = name
        self._seed = private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption())
        self._public_key = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self._key_id = ed25519_key_id(name, self._public_key)

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        """A new random key named ``name``."""
        return cls(name, ed25519.Ed25519PrivateKey.generate())

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID (big-endian as written in signatures)."""
        return self._key_id

    @property
    def public_key(self) -> bytes:
        return self._public_key

    def verifier(self) -> NoteVerifier:
        """The matching verifier."""
        return NoteVerifier(self._name, self._public_key)

    def verifier_key(self) -> str:
        """The public ``<name>+<hex8 key id>+<base64(0x01 || public key)>`` string."""
        return self.verifier().verifier_key()

    def encode_signer_key(self) -> str:
        """The secret ``PRIVATE+KEY+<name>+<hex8 key id>+<base64(0x01 || seed)>`` string."""
        typed = bytes([ALG_ED25519]) + self._seed
        return f"{_SIGNER_PREFIX}{self._name}+{self._key_id.hex()}+{_b64encode(typed)}"

    def signature_line(self, text: str) -> str:
        """The signature line (with its newline) over an already valid note ``text``."""
        signature = self._key.sign(_check_text(text, "note text"))
        return f"{SIGNATURE_PREFIX}{self._name} {_b64encode(self._key_id + signature)}\n"

    def sign(self, text: str) -> str:
        """The signed note: ``text``, a blank line, and this key's signature line."""
        return sign_note(text, [self])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NoteSigner):
            return NotImplemented
        return (self._name, self._seed) == (other._name, other._seed)

    def __hash__(self) -> int:
        return hash((self._name, self._public_key))

    def __repr__(self) -> str:
        return f"NoteSigner(name={self._name!r}, key_id={self._key_id.hex()!r})"


def parse_signer_key(skey: str) -> NoteSigner:
    """Parse ``PRIVATE+KEY+<name>+<hex8 key id>+<base64(0x01 || 32-byte seed)>``."""
    if not isinstance(skey, str) or not skey.startswith(_SIGNER_PREFIX):
        raise NoteError("signer key does not start with PRIVATE+KEY+")
    name, key_id, typed_key = _split_key(skey[len(_SIGNER_PREFIX):], "signer key")
    signer = NoteSigner(name, _ed25519_material(typed_key, "signer key"))
    # The ID names the public key, so it can only be checked after deriving it.
    if signer.key_id != key_id:
        raise NoteError("signer key ID does not match its name and key")
    return signer


# --- notes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of an opened note."""

    name: str
    key_id: bytes
    signature: bytes
    #: True when a trusted verifier checked it; False for a key the caller does not know.
    verified: bool

    def line(self) -> str:
        """The signature line as written in a note, newline included."""
        return f"{SIGNATURE_PREFIX}{self.name} {_b64encode(self.key_id + self.signature)}\n"


@dataclass(frozen=True)
class Note:
    """An opened note: its text and its (deduplicated) signatures, in note order."""

    text: str
    signatures: tuple[NoteSignature, ...]

    @property
    def verified_signatures(self) -> tuple[NoteSignature, ...]:
        return tuple(s for s in self.signatures if s.verified)

    @property
    def unverified_signatures(self) -> tuple[NoteSignature, ...]:
        return tuple(s for s in self.signatures if not s.verified)


def sign_note(text: str, signers: Sequence[NoteSigner]) -> str:
    """``text`` signed by each of ``signers`` in order (one signature line each)."""
    _check_text(text, "note text")
    if not signers:
        raise NoteError("a note needs at least one signer")
    if len(signers) > MAX_SIGNATURES:
        raise NoteError(f"a note carries at most {MAX_SIGNATURES} signatures")
    slots = {(s.name, s.key_id) for s in signers}
    if len(slots) != len(signers):
        raise NoteError("two signers share a key name and key ID")
    return text + "\n" + "".join(s.signature_line(text) for s in signers)


def _note_string(note: str | bytes) -> str:
    """The note as text, after the whole-note rules: valid UTF-8, no control characters."""
    if isinstance(note, bytes):
        try:
            text = note.decode("utf-8")
        except UnicodeDecodeError:
            raise NoteError("malformed note: not valid UTF-8") from None
    elif isinstance(note, str):
        text = note
        _utf8(text, "malformed note: note")
    else:
        raise NoteError("malformed note: not a string")
    if _CONTROL.search(text):
        raise NoteError("malformed note: contains a control character other than newline")
    return text


def _parse_signature_line(line: str, number: int) -> tuple[str, bytes, bytes]:
    """(name, key ID, signature) of one signature line, without its newline."""
    where = f"malformed note: signature line {number}"
    if not line.startswith(SIGNATURE_PREFIX):
        raise NoteError(f"{where} does not start with an em dash and a space")
    name, sep, encoded = line[len(SIGNATURE_PREFIX):].partition(" ")
    if not sep or not encoded:
        raise NoteError(f"{where} is not '<name> <base64 signature>'")
    _check_name(name, f"{where}: key name")
    raw = _b64decode(encoded, f"{where}: signature")
    if len(raw) <= _KEY_ID_SIZE:
        raise NoteError(f"{where}: signature is shorter than 5 bytes")
    return name, raw[:_KEY_ID_SIZE], raw[_KEY_ID_SIZE:]


def _split_note(note: str) -> tuple[str, list[str]]:
    """(text, signature lines) split at the last blank line."""
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed note: no blank line before the signatures")
    text, block = note[: split + 1], note[split + 2:]
    if not block:
        raise NoteError("malformed note: no signature lines")
    if not block.endswith("\n"):
        raise NoteError("malformed note: last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    # Checked before any base64 or Ed25519 work, to bound the cost of hostile notes.
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"malformed note: more than {MAX_SIGNATURES} signatures")
    return text, lines


def _index(verifiers: Iterable[NoteVerifier]) -> dict[tuple[str, bytes], NoteVerifier]:
    """Verifiers by (name, key ID); two different keys in one slot would be ambiguous."""
    known: dict[tuple[str, bytes], NoteVerifier] = {}
    for verifier in verifiers:
        slot = (verifier.name, verifier.key_id)
        if known.setdefault(slot, verifier) != verifier:
            raise NoteError(f"ambiguous verifiers for key {verifier.name}+{verifier.key_id.hex()}")
    return known


def open_note(note: str | bytes, verifiers: Iterable[NoteVerifier]) -> Note:
    """Parse ``note`` and check its signatures against the trusted ``verifiers``.

    Signatures from unknown keys (name and key ID not both matching a verifier) are kept as
    unverified. Raises NoteError when the note is malformed or a known key's signature fails,
    and its subclass UnverifiedNoteError when no known key signed it.
    """
    text, lines = _split_note(_note_string(note))
    parsed = [_parse_signature_line(line, n) for n, line in enumerate(lines, start=1)]
    known = _index(verifiers)
    message = text.encode("utf-8")
    seen: set[tuple[str, bytes, bytes]] = set()
    signatures: list[NoteSignature] = []
    for name, key_id, signature in parsed:
        verifier = known.get((name, key_id))
        # The spec says SHOULD reject on a failed known signature; we do, so that a key that
        # is trusted and present but wrong is never silently outvoted by another one.
        if verifier is not None and not verifier.verify(signature, message):
            raise NoteError(f"invalid signature for key {name}+{key_id.hex()}")
        # Report a key once: golang.org/x/mod drops repeats of a known key by (name, key ID)
        # and repeats of an unknown one by identical line.
        dedupe = (name, key_id, b"" if verifier is not None else signature)
        if dedupe in seen:
            continue
        seen.add(dedupe)
        signatures.append(NoteSignature(name, key_id, signature, verifier is not None))
    if not any(s.verified for s in signatures):
        raise UnverifiedNoteError(Note(text, tuple(signatures)))
    return Note(text, tuple(signatures))


# --- checkpoints -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint body. Construction checks that it encodes to a valid note text."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Lists are accepted for convenience but stored as a tuple to keep the value hashable.
        object.__setattr__(self, "extensions", tuple(self.extensions))
        if not isinstance(self.origin, str) or not self.origin:
            raise NoteError("checkpoint origin is empty")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise NoteError("checkpoint size must be an integer")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise NoteError("checkpoint size is outside 0..2**64-1")
        if not isinstance(self.root_hash, bytes) or not self.root_hash:
            raise NoteError("checkpoint root hash is empty")
        for line in (self.origin, *self.extensions):
            if not isinstance(line, str) or "\n" in line:
                raise NoteError("checkpoint lines must be strings without newlines")
        _check_text(self.body(), "checkpoint")

    def body(self) -> str:
        """The exact note text: origin, size, root hash, extension lines, each + newline."""
        lines = [self.origin, str(self.size), _b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)

    def validate(self) -> None:
        """Raise NoteError unless this is a strict tlog-checkpoint v1.0.0 SHA-256 checkpoint."""
        if len(self.root_hash) != HASH_SIZE:
            raise NoteError(f"checkpoint root hash is {len(self.root_hash)} bytes, not 32")
        if any(not line for line in self.extensions):
            raise NoteError("checkpoint has an empty extension line")


def parse_checkpoint(text: str, *, origin: str | None = None, strict: bool = True) -> Checkpoint:
    """Parse a checkpoint note text (not the signed note: see :func:`verify_checkpoint`).

    ``origin``, when given, must equal the first line. ``strict=False`` accepts root hashes of
    any length and empty extension lines (transparency-dev/formats' parser does).
    """
    _check_text(text, "checkpoint")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("checkpoint has fewer than three lines")
    first, size_line, hash_line, *extensions = lines
    if not first:
        raise NoteError("checkpoint origin is empty")
    if origin is not None and first != origin:
        raise NoteError(f"checkpoint origin {first!r} is not the expected {origin!r}")
    if not _DECIMAL.fullmatch(size_line):
        raise NoteError("checkpoint size is not a decimal number without leading zeros")
    size = int(size_line)
    if size > MAX_TREE_SIZE:
        raise NoteError("checkpoint size does not fit in 64 bits")
    root_hash = _b64decode(hash_line, "checkpoint root hash")
    checkpoint = Checkpoint(first, size, root_hash, tuple(extensions))
    if strict:
        checkpoint.validate()
    return checkpoint


def sign_checkpoint(signer: NoteSigner, checkpoint: Checkpoint) -> str:
    """The signed checkpoint note; only strict (32-byte root, no empty line) bodies are signed.

    tlog-checkpoint says the key name SHOULD equal the origin; that is the caller's choice.
    """
    checkpoint.validate()
    return signer.sign(checkpoint.body())


def verify_checkpoint(
    note: str | bytes, verifier: NoteVerifier, origin: str | None = None
) -> Checkpoint:
    """Open a signed checkpoint with the log's key and parse it strictly.

    Cosignatures and other unknown signatures are ignored. Pass ``origin`` to pin the log
    identity: the key name need not equal the origin (sum.golang.org's does not).
    """
    opened = open_note(note, [verifier])
    return parse_checkpoint(opened.text, origin=origin)
