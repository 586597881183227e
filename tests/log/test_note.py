"""C2SP signed notes and tlog checkpoints: the published vectors, round trips, tampering, fuzz."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from issuer.log.note import (
    MAX_SIGNATURES,
    MAX_TREE_SIZE,
    Checkpoint,
    Note,
    NoteError,
    NoteSigner,
    NoteVerifier,
    UnverifiedNoteError,
    ed25519_key_id,
    open_note,
    parse_checkpoint,
    parse_signer_key,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
)
from tests.conftest import vector

NOTES = vector("signed_note.json")
CHECKPOINTS = vector("checkpoint.json")
KEYS = NOTES["keys"]

# Fixed seeds keep the suite deterministic (and signing is deterministic in Ed25519).
ALICE = NoteSigner("example.com/alice", bytes(range(32)))
BOB = NoteSigner("example.com/bob", bytes(range(32, 64)))
ROOT = hashlib.sha256(b"root").digest()


def _note_input(case: dict[str, Any]) -> str | bytes:
    """The note as given: text, or raw bytes when it is not valid UTF-8."""
    if case["note"] is not None:
        return str(case["note"])
    return bytes.fromhex(case["note_hex"])


def _verifiers(keys: list[str]) -> list[NoteVerifier]:
    return [NoteVerifier.from_key(k) for k in keys]


def _names(note: Note, verified: bool) -> list[str]:
    return [s.name for s in note.signatures if s.verified is verified]


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [str(c["name"])[:60] for c in cases]


# --- signed-note vectors ---------------------------------------------------------------------


@pytest.mark.parametrize("case", KEYS["valid_verifier_keys"], ids=lambda c: c["key"][:20])
def test_vector_verifier_keys_parse_and_reencode(case: dict[str, Any]) -> None:
    verifier = NoteVerifier.from_key(case["key"])
    name, key_id_hex, _ = case["key"].split("+", 2)
    assert verifier.name == name
    assert verifier.key_id.hex() == key_id_hex
    assert verifier.verifier_key() == case["key"]


@pytest.mark.parametrize("case", KEYS["key_pairs"], ids=lambda c: c["verifier_key"][:20])
def test_vector_key_pairs(case: dict[str, Any]) -> None:
    signer = parse_signer_key(case["signer_key"])
    assert signer.verifier_key() == case["verifier_key"]
    assert signer.encode_signer_key() == case["signer_key"]
    verifier = NoteVerifier.from_key(case["verifier_key"])
    assert signer.verifier() == verifier
    opened = open_note(signer.sign("hello\n"), [verifier])
    assert opened.text == "hello\n"
    assert _names(opened, True) == [signer.name]


@pytest.mark.parametrize("case", KEYS["invalid_verifier_keys"], ids=lambda c: c["why"][:40])
def test_vector_invalid_verifier_keys(case: dict[str, Any]) -> None:
    with pytest.raises(NoteError):
        NoteVerifier.from_key(case["key"])


VERIFYING = [c for c in NOTES["notes"] if c["should_verify"] is True]
FAILING = [c for c in NOTES["notes"] if c["should_verify"] is False]
PARSE_ONLY = [c for c in NOTES["notes"] if c["should_verify"] is None]


def test_vectors_are_all_classified() -> None:
    assert len(VERIFYING) + len(FAILING) + len(PARSE_ONLY) == len(NOTES["notes"])
    assert VERIFYING and FAILING and PARSE_ONLY


@pytest.mark.parametrize("case", VERIFYING, ids=_ids(VERIFYING))
def test_vector_notes_that_verify(case: dict[str, Any]) -> None:
    verifiers = _verifiers(case["verifier_keys"])
    opened = open_note(_note_input(case), verifiers)
    # Each verified key is reported once, duplicates included.
    assert _names(opened, True) == case["verified_signers"]
    for name in case.get("unverified_signers", []):
        assert name in _names(opened, False)
    if "note_text" in case:
        assert opened.text == case["note_text"]
    # Bytes in, same result.
    assert open_note(case["note"].encode("utf-8"), verifiers) == opened
    # Every reported signature re-encodes to a line of the note.
    for signature in opened.signatures:
        assert signature.line() in case["note"]


def test_vector_duplicates_are_reported_once() -> None:
    case = next(c for c in VERIFYING if "note_on_duplicates" in c)
    opened = open_note(case["note"], _verifiers(case["verifier_keys"]))
    # golang.org/x/mod: Peter once, the exact and the corrupted Enoch signature once each.
    assert _names(opened, True) == ["PeterNeumann"]
    assert _names(opened, False) == ["EnochRoot", "EnochRoot"]
    assert len({s.signature for s in opened.unverified_signatures}) == 2


@pytest.mark.parametrize("case", FAILING, ids=_ids(FAILING))
def test_vector_notes_that_fail(case: dict[str, Any]) -> None:
    with pytest.raises(NoteError) as caught:
        open_note(_note_input(case), _verifiers(case["verifier_keys"]))
    # Our messages start with (or are) golang.org/x/mod's.
    assert case["error"] in str(caught.value)
    assert "\n" not in str(caught.value)


def test_vector_no_known_verifier_is_unverified_note_error() -> None:
    case = next(c for c in FAILING if not c["verifier_keys"])
    with pytest.raises(UnverifiedNoteError) as caught:
        open_note(case["note"], [])
    assert [s.name for s in caught.value.note.signatures] == ["PeterNeumann", "EnochRoot"]
    assert not caught.value.note.verified_signatures


@pytest.mark.parametrize("case", PARSE_ONLY, ids=_ids(PARSE_ONLY))
def test_vector_notes_parse_only(case: dict[str, Any]) -> None:
    """No key published: the note must parse (and be refused as unverified), nothing more."""
    with pytest.raises(UnverifiedNoteError) as caught:
        open_note(case["note"], [ALICE.verifier()])
    parsed = caught.value.note
    assert parsed.text == case["note_text"]
    assert "".join(s.line() for s in parsed.signatures) == case["note"][len(case["note_text"]) + 1:]


def test_vector_signing_is_deterministic() -> None:
    cases = [c for c in NOTES["notes"] if "signing_is_deterministic" in c]
    assert cases
    for case in cases:
        assert parse_signer_key(case["signer_key"]).sign(case["note_text"]) == case["note"]


def test_vector_c2sp_example_key_id_is_the_spec_formula() -> None:
    verifier = NoteVerifier.from_key(KEYS["valid_verifier_keys"][2]["key"])
    digest = hashlib.sha256(b"example.com/foo\n\x01" + verifier.public_key).digest()
    assert verifier.key_id == digest[:4] == ed25519_key_id("example.com/foo", verifier.public_key)


# --- checkpoint vectors ----------------------------------------------------------------------

SIGNED = CHECKPOINTS["signed_checkpoints"]
BODIES = CHECKPOINTS["body_parse_cases"]
GO_SUM_ORIGIN = "go.sum database tree"


@pytest.mark.parametrize("case", SIGNED, ids=_ids(SIGNED))
def test_vector_signed_checkpoints(case: dict[str, Any]) -> None:
    expected = Checkpoint(case["origin"], case["tree_size"],
                          base64.b64decode(case["root_hash_base64"]))
    assert expected.body() == case["note_text"]
    if case["should_verify"] is None:
        with pytest.raises(UnverifiedNoteError) as caught:
            open_note(case["signed_note"], [])
        assert caught.value.note.text == case["note_text"]
        assert [s.line() for s in caught.value.note.signatures] == [
            line + "\n" for line in case["signature_lines"]]
        assert parse_checkpoint(caught.value.note.text, origin=case["origin"]) == expected
        return
    verifiers = _verifiers(case["verifier_keys"])
    opened = open_note(case["signed_note"], verifiers)
    assert _names(opened, True) == case.get("verified_signers", [verifiers[0].name])
    assert _names(opened, False) == case.get("unknown_signers_to_ignore", [])
    assert parse_checkpoint(opened.text, origin=case["expected_origin"]) == expected
    # The log key alone: cosignatures become unknown and are ignored.
    log = verifiers[0]
    assert verify_checkpoint(case["signed_note"], log, case["expected_origin"]) == expected
    assert verify_checkpoint(case["signed_note"], log) == expected
    with pytest.raises(NoteError, match="origin"):
        verify_checkpoint(case["signed_note"], log, "Go rocks but I might have the wrong ID")


@pytest.mark.parametrize("case", BODIES, ids=_ids(BODIES))
def test_vector_checkpoint_bodies(case: dict[str, Any]) -> None:
    # golang.org/x/mod's ParseTree only accepts the go.sum origin; formats' parser any origin.
    pinned = GO_SUM_ORIGIN if case["source"]["repo"] == "golang/mod" else None
    if not case["should_parse"]:
        for strict in (True, False):
            with pytest.raises(NoteError):
                parse_checkpoint(case["text"], origin=pinned, strict=strict)
        return
    if "root_hash_base64" in case:
        root = base64.b64decode(case["root_hash_base64"])
    else:
        root = case["root_hash_utf8"].encode("utf-8")
    checkpoint = parse_checkpoint(case["text"], origin=pinned, strict=False)
    assert (checkpoint.origin, checkpoint.size, checkpoint.root_hash) == (
        case["origin"], case["tree_size"], root)
    assert "".join(e + "\n" for e in checkpoint.extensions) == case.get(
        "rest_after_three_lines", "")
    assert checkpoint.body() == case["text"]
    if case.get("root_hash_not_32_bytes"):
        # tlog-checkpoint with SHA-256: a root hash is 32 bytes.
        with pytest.raises(NoteError, match="32"):
            parse_checkpoint(case["text"])
    else:
        assert parse_checkpoint(case["text"], origin=pinned) == checkpoint


def test_vector_go_sum_origin_mismatch_parses_without_a_pinned_origin() -> None:
    case = next(c for c in BODIES if c["text"].startswith("not-go.sum"))
    assert parse_checkpoint(case["text"]).origin == "not-go.sum database tree"


# --- notes: round trips and tampering --------------------------------------------------------


def test_round_trip() -> None:
    text = "line one\n\nline three after a blank line\n\u2014 looks like a signature\n"
    note = ALICE.sign(text)
    assert note == text + "\n" + ALICE.signature_line(text)
    opened = open_note(note, [ALICE.verifier()])
    assert opened.text == text
    [signature] = opened.signatures
    assert (signature.name, signature.key_id, signature.verified) == (
        ALICE.name, ALICE.key_id, True)
    assert ALICE.verifier().verify(signature.signature, text.encode())


def test_two_signers_and_partial_trust() -> None:
    note = sign_note("text\n", [ALICE, BOB])
    assert _names(open_note(note, [BOB.verifier()]), True) == [BOB.name]
    assert _names(open_note(note, [BOB.verifier()]), False) == [ALICE.name]
    both = open_note(note, [ALICE.verifier(), BOB.verifier()])
    assert _names(both, True) == [ALICE.name, BOB.name]


def test_tampered_text_fails() -> None:
    note = ALICE.sign("pay 10\n").replace("pay 10", "pay 99")
    with pytest.raises(NoteError, match="invalid signature for key example.com/alice"):
        open_note(note, [ALICE.verifier()])


def test_tampered_signature_fails() -> None:
    raw = ALICE.key_id + bytes(64)
    note = "text\n\n\u2014 " + ALICE.name + " " + base64.b64encode(raw).decode() + "\n"
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(note, [ALICE.verifier()])


def test_tampered_key_id_is_an_unknown_key() -> None:
    line = ALICE.signature_line("text\n")
    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    raw[0] ^= 1
    forged = "text\n\n\u2014 " + ALICE.name + " " + base64.b64encode(bytes(raw)).decode() + "\n"
    with pytest.raises(UnverifiedNoteError):
        open_note(forged, [ALICE.verifier()])


def test_same_name_other_key_is_ignored_not_failed() -> None:
    impostor = NoteSigner(ALICE.name, bytes(32))
    note = sign_note("text\n", [impostor, ALICE])
    opened = open_note(note, [ALICE.verifier()])
    assert [(s.key_id, s.verified) for s in opened.signatures] == [
        (impostor.key_id, False), (ALICE.key_id, True)]


def test_known_key_failure_is_fatal_even_with_another_good_signature() -> None:
    good = BOB.signature_line("text\n")
    bad = ALICE.signature_line("other\n")
    with pytest.raises(NoteError, match="invalid signature for key example.com/alice"):
        open_note("text\n\n" + good + bad, [ALICE.verifier(), BOB.verifier()])


def test_signature_limit_is_inclusive() -> None:
    line = ALICE.signature_line("t\n")
    assert open_note("t\n\n" + line * MAX_SIGNATURES, [ALICE.verifier()]).signatures
    with pytest.raises(NoteError, match="more than 100"):
        open_note("t\n\n" + line * (MAX_SIGNATURES + 1), [ALICE.verifier()])


@pytest.mark.parametrize("note, reason", [
    ("t\n\n\u2014 example.com/alice\n", "name"),
    ("t\n\n\u2014 example.com/alice \n", "name"),
    ("t\n\n\u2014 example.com/alice AAAAAA==\n", "shorter than 5 bytes"),
    ("t\n\n\u2014 example.com/alice AAAAAAB=\n", "not canonical"),  # padding bits set
    ("t\n\n\u2014 example.com/alice AAAA AAA=\n", "base64"),
    ("t\n\n\u2014 ex+ample AAAAAAA=\n", "'+'"),
    ("t\n\n\u2014 \u00a0x AAAAAAA=\n", "white space"),
    ("t\n\n- example.com/alice AAAAAAA=\n", "em dash"),
    ("t\n\n\u2014 example.com/alice AAAAAAA=\n\n", "no signature lines"),
    ("t\r\n\n\u2014 example.com/alice AAAAAAA=\n", "control character"),
])
def test_malformed_signature_lines(note: str, reason: str) -> None:
    with pytest.raises(NoteError, match="malformed note") as caught:
        open_note(note, [ALICE.verifier()])
    assert reason in str(caught.value)


def test_open_rejects_lone_surrogate_and_bad_utf8() -> None:
    with pytest.raises(NoteError, match="UTF-8"):
        open_note("\ud800" + ALICE.sign("x\n"), [ALICE.verifier()])
    with pytest.raises(NoteError, match="UTF-8"):
        open_note(b"\xc0\xaf" + ALICE.sign("x\n").encode(), [ALICE.verifier()])


def test_ambiguous_verifiers_are_refused() -> None:
    # Two different keys can only share (name, key ID) by a 32-bit collision; simulate one.
    other = NoteVerifier(ALICE.name, BOB.public_key)
    object.__setattr__(other, "key_id", ALICE.key_id)
    with pytest.raises(NoteError, match="ambiguous"):
        open_note(ALICE.sign("x\n"), [ALICE.verifier(), other])
    # The same key twice is fine.
    assert open_note(ALICE.sign("x\n"), [ALICE.verifier(), ALICE.verifier()])


@pytest.mark.parametrize("text, reason", [
    ("no newline", "newline"),
    ("", "newline"),
    ("tab\there\n", "control"),
    ("nul\x00\n", "control"),
    ("bad \ud83d\n", "UTF-8"),
])
def test_sign_rejects_bad_text(text: str, reason: str) -> None:
    with pytest.raises(NoteError, match=reason):
        ALICE.sign(text)


def test_sign_note_signer_rules() -> None:
    with pytest.raises(NoteError, match="at least one"):
        sign_note("x\n", [])
    with pytest.raises(NoteError, match="share"):
        sign_note("x\n", [ALICE, NoteSigner(ALICE.name, bytes(range(32)))])
    signers = [NoteSigner(f"k{i}", bytes([i]) * 32) for i in range(MAX_SIGNATURES + 1)]
    with pytest.raises(NoteError, match="at most"):
        sign_note("x\n", signers)
    # The limit is inclusive on both sides: 100 signatures are signed, and open.
    hundred = signers[:MAX_SIGNATURES]
    opened = open_note(sign_note("x\n", hundred), [s.verifier() for s in hundred])
    assert len(opened.verified_signatures) == MAX_SIGNATURES


# --- keys ------------------------------------------------------------------------------------


def _vkey(name: str, typed: bytes, key_id: bytes | None = None) -> str:
    """A verifier key string whose ID is computed over exactly ``typed`` unless given."""
    if key_id is None:
        key_id = hashlib.sha256(name.encode() + b"\n" + typed).digest()[:4]
    return f"{name}+{key_id.hex()}+{base64.b64encode(typed).decode()}"


@pytest.mark.parametrize("vkey, reason", [
    (_vkey("a", b"\x01" + bytes(32), b"\0\0\0\0"), "does not match"),
    (_vkey("a", b"\x02" + bytes(32)), "unsupported signature type 0x02"),
    (_vkey("a", b"\x01" + bytes(33)), "32-byte"),  # ID matches the longer key (canonical b64)
    (_vkey("a", b"\x01" + bytes(31)), "32-byte"),
    ("a+" + "0" * 8 + "+AQ", "base64"),
    ("a+" + "0" * 8 + "+", "empty"),
    ("a+ABCDEF01+" + base64.b64encode(b"\x01" + bytes(32)).decode(), "hex"),
    ("a+1234567+AQ==", "hex"),
    ("a+12345678", "form"),
    ("a", "form"),
    (_vkey("", b"\x01" + bytes(32)), "empty"),
    (_vkey("a b", b"\x01" + bytes(32)), "white space"),
    (_vkey("a\u3000b", b"\x01" + bytes(32)), "white space"),
    (_vkey("a\x01b", b"\x01" + bytes(32)), "control"),
])
def test_bad_verifier_keys(vkey: str, reason: str) -> None:
    with pytest.raises(NoteError, match="verifier key") as caught:
        NoteVerifier.from_key(vkey)
    assert reason in str(caught.value)


def test_verifier_key_with_plus_in_name_is_refused() -> None:
    # 'a+b+<id>+<key>' splits as name 'a', id 'b+<id>'...: never parsed as name 'a+b'.
    with pytest.raises(NoteError):
        NoteVerifier.from_key("a+" + ALICE.verifier_key())


@pytest.mark.parametrize("skey, reason", [
    ("PRIVATE+KEY+a+00000000+AQ==", "32-byte"),
    ("PUBLIC+KEY+a+00000000+AQ==", "PRIVATE+KEY+"),
    ("PRIVATE+KEY+a+00000000+" + base64.b64encode(b"\x01" + bytes(32)).decode(),
     "does not match"),
    ("PRIVATE+KEY+a+00000000+" + base64.b64encode(b"\x02" + bytes(32)).decode(),
     "unsupported signature type"),
])
def test_bad_signer_keys(skey: str, reason: str) -> None:
    with pytest.raises(NoteError) as caught:
        parse_signer_key(skey)
    assert reason in str(caught.value)
    assert "AQ" not in str(caught.value)  # secret material never echoed


def test_signer_value_object() -> None:
    seed = bytes(range(32))
    private = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    same = NoteSigner(ALICE.name, private)
    assert same == ALICE and hash(same) == hash(ALICE)
    assert NoteSigner("other", seed) != ALICE
    assert seed.hex() not in repr(ALICE) and ALICE.key_id.hex() in repr(ALICE)
    assert parse_signer_key(ALICE.encode_signer_key()) == ALICE
    assert NoteVerifier.from_public_key(ALICE.name, private.public_key()) == ALICE.verifier()
    fresh = NoteSigner.generate("example.com/fresh")
    assert fresh != NoteSigner.generate("example.com/fresh")
    assert NoteVerifier.from_key(fresh.verifier_key()) == fresh.verifier()
    for bad in ("", "a b", "a+b", "a\nb"):
        with pytest.raises(NoteError):
            NoteSigner(bad, seed)
    with pytest.raises(NoteError):
        NoteSigner("a", b"short")


@pytest.mark.parametrize("public_key", [ALICE.public_key[:31], ALICE.public_key + b"\0",
                                        ALICE.public_key.hex()[:32],
                                        bytearray(ALICE.public_key)])
def test_verifier_public_key_is_32_bytes(public_key: Any) -> None:
    with pytest.raises(NoteError, match="must be 32 bytes"):
        NoteVerifier(ALICE.name, public_key)


def test_verify_rejects_wrong_lengths() -> None:
    verifier = ALICE.verifier()
    line = ALICE.signature_line("x\n")
    signature = base64.b64decode(line.split(" ")[2])[4:]
    assert verifier.verify(signature, b"x\n")
    assert not verifier.verify(signature[:63], b"x\n")
    assert not verifier.verify(signature + b"\0", b"x\n")
    assert not verifier.verify(signature, b"y\n")


# --- checkpoints -----------------------------------------------------------------------------


def test_checkpoint_body_and_round_trip() -> None:
    checkpoint = Checkpoint("example.com/log", 42, ROOT, ("ext one", "ext two"))
    assert checkpoint.body() == (
        "example.com/log\n42\n" + base64.b64encode(ROOT).decode() + "\next one\next two\n")
    log = NoteSigner("example.com/log", bytes(range(64, 96)))
    note = sign_checkpoint(log, checkpoint)
    assert verify_checkpoint(note, log.verifier(), "example.com/log") == checkpoint
    # A witness cosignature is an unknown key to the log verifier and is ignored.
    cosigned = note + BOB.signature_line(checkpoint.body())
    assert verify_checkpoint(cosigned, log.verifier()) == checkpoint
    with pytest.raises(NoteError, match="origin"):
        verify_checkpoint(note, log.verifier(), "example.com/other")
    with pytest.raises(UnverifiedNoteError):
        verify_checkpoint(note, ALICE.verifier())


def test_checkpoint_extensions_given_as_a_list_are_stored_as_a_tuple() -> None:
    listed = Checkpoint("example.com/log", 42, ROOT, ["ext"])  # type: ignore[arg-type]
    assert listed.extensions == ("ext",)
    assert listed == Checkpoint("example.com/log", 42, ROOT, ("ext",))
    assert len({listed, parse_checkpoint(listed.body())}) == 1  # a value: hashable, equal


def test_verify_checkpoint_refuses_a_signed_non_checkpoint() -> None:
    with pytest.raises(NoteError, match="three lines"):
        verify_checkpoint(ALICE.sign("just text\n"), ALICE.verifier())


@pytest.mark.parametrize("size", [0, 1, 10, MAX_TREE_SIZE])
def test_checkpoint_sizes(size: int) -> None:
    checkpoint = Checkpoint("o", size, ROOT)
    assert parse_checkpoint(checkpoint.body()) == checkpoint


@pytest.mark.parametrize("size_line", ["00", "01", "+1", " 1", "1 ", "1_000", "\u0661",
                                       "-0", "", str(MAX_TREE_SIZE + 1), "1e3"])
def test_checkpoint_bad_size_lines(size_line: str) -> None:
    text = f"o\n{size_line}\n{base64.b64encode(ROOT).decode()}\n"
    with pytest.raises(NoteError, match="size"):
        parse_checkpoint(text)


@pytest.mark.parametrize("text, reason", [
    ("o\n1\n\n", "root hash is empty"),
    ("o\n1\n" + base64.b64encode(ROOT).decode() + "\n\n", "empty extension"),
    ("o\n1\n" + base64.b64encode(ROOT).decode()[:-1] + "\n", "base64"),
    ("o\n1\n" + base64.urlsafe_b64encode(b"\xff" * 32).decode() + "\n", "base64"),
    ("o\x01\n1\n" + base64.b64encode(ROOT).decode() + "\n", "control"),
])
def test_checkpoint_bad_bodies(text: str, reason: str) -> None:
    with pytest.raises(NoteError) as caught:
        parse_checkpoint(text)
    assert reason in str(caught.value)


@pytest.mark.parametrize("kwargs", [
    {"origin": ""},
    {"origin": "a\nb"},
    {"origin": "a\tb"},
    {"size": -1},
    {"size": MAX_TREE_SIZE + 1},
    {"size": True},
    {"root_hash": b""},
    {"extensions": ("a\nb",)},
])
def test_checkpoint_construction_rules(kwargs: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"origin": "o", "size": 1, "root_hash": ROOT}
    fields.update(kwargs)
    with pytest.raises(NoteError):
        Checkpoint(**fields)


def test_sign_checkpoint_is_strict() -> None:
    with pytest.raises(NoteError, match="32"):
        sign_checkpoint(ALICE, Checkpoint("o", 1, b"short"))
    with pytest.raises(NoteError, match="empty extension"):
        sign_checkpoint(ALICE, Checkpoint("o", 1, ROOT, ("",)))


# --- properties ------------------------------------------------------------------------------

ANY_CHAR = st.characters(exclude_categories=())  # surrogates and control characters included
ANY_TEXT = st.text(alphabet=ANY_CHAR, max_size=60) | st.text(
    alphabet=st.sampled_from("ab \n\u2014+=/\t"), max_size=60)
#: One valid line: no newline, no control character, no surrogate.
LINE = st.text(alphabet=st.characters(exclude_characters="\n", exclude_categories=("Cs", "Cc")),
               min_size=1, max_size=20)
#: Texts that are mostly valid note texts: blank lines and signature-like lines included.
NOTE_TEXT = st.lists(LINE | st.just("") | LINE.map(lambda line: "\u2014 " + line),
                     max_size=5).map(lambda lines: "".join(line + "\n" for line in lines))


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT | NOTE_TEXT)
def test_property_sign_round_trips_or_refuses(text: str) -> None:
    try:
        note = ALICE.sign(text)
    except NoteError:
        return
    opened = open_note(note, [ALICE.verifier()])
    assert opened.text == text
    assert _names(opened, True) == [ALICE.name]
    assert open_note(note.encode("utf-8"), [ALICE.verifier()]) == opened


def _alice_line(text: str) -> str:
    """Alice's real signature line over ``text``, or nothing when it cannot be signed."""
    try:
        return ALICE.signature_line(text)
    except NoteError:
        return ""


def _signature_like() -> st.SearchStrategy[str]:
    """Strings that often get past the first checks of a note, down to signature checks."""
    raw = st.binary(max_size=70) | st.binary(min_size=64, max_size=64).map(
        lambda sig: ALICE.key_id + sig)
    forged = st.builds(lambda name, raw: f"\u2014 {name} {base64.b64encode(raw).decode()}\n",
                       st.sampled_from([ALICE.name, BOB.name, "x", "a b", ""]), raw)
    return st.builds(
        lambda text, lines, real: text + "\n" + "".join(lines) + (_alice_line(text) * real),
        ANY_TEXT | NOTE_TEXT, st.lists(forged, max_size=3), st.booleans())


@settings(max_examples=400, deadline=None)
@given(ANY_TEXT | _signature_like())
def test_property_open_note_on_any_string_raises_only_note_error(note: str) -> None:
    try:
        open_note(note, [ALICE.verifier(), BOB.verifier()])
    except NoteError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_property_open_note_on_any_bytes_raises_only_note_error(note: bytes) -> None:
    try:
        open_note(note, [ALICE.verifier()])
    except NoteError:
        pass


@settings(max_examples=300, deadline=None)
@given(LINE, st.data())
def test_property_any_single_edit_breaks_a_signed_note(text: str, data: st.DataObject) -> None:
    note = ALICE.sign(text + "\n")
    index = data.draw(st.integers(0, len(note) - 1))
    replacement = data.draw(ANY_CHAR)
    edited = note[:index] + replacement + note[index + 1:]
    assume(edited != note)
    with pytest.raises(NoteError):
        open_note(edited, [ALICE.verifier()])


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_property_key_and_checkpoint_parsers_raise_only_note_error(text: str) -> None:
    for parse in (NoteVerifier.from_key, parse_signer_key, parse_checkpoint,
                  lambda t: parse_checkpoint(t, strict=False)):
        try:
            parse(text)
        except NoteError:
            pass


@settings(max_examples=200, deadline=None)
@given(LINE, st.integers(0, MAX_TREE_SIZE), st.binary(min_size=32, max_size=32),
       st.lists(LINE, max_size=3))
def test_property_checkpoint_round_trip(origin: str, size: int, root: bytes,
                                       extensions: list[str]) -> None:
    checkpoint = Checkpoint(origin, size, root, tuple(extensions))
    assert parse_checkpoint(checkpoint.body(), origin=origin) == checkpoint
    assert verify_checkpoint(sign_checkpoint(ALICE, checkpoint), ALICE.verifier()) == checkpoint
