"""Keys, signed notes, DSSE envelopes and canonical JSON: redline's cryptographic core (pure)."""

from redline.crypto.canonical import canonical_digest, canonical_json, parse_json
from redline.crypto.dsse import Envelope, make_statement, open_statement, pae, sign_envelope, sign_statement
from redline.crypto.keys import SigningKey, VerifierKey, load_signing_key, load_verifier_key, save_signing_key
from redline.crypto.note import Note, NoteSignature, open_note, parse_note, sign_note

__all__ = [
    "Envelope", "Note", "NoteSignature", "SigningKey", "VerifierKey",
    "canonical_digest", "canonical_json", "load_signing_key", "load_verifier_key", "make_statement",
    "open_note", "open_statement", "pae", "parse_json", "parse_note", "save_signing_key",
    "sign_envelope", "sign_note", "sign_statement",
]
