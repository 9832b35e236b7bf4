"""The predicate base model, the shared bounded types and the statement codec.

Every redline fact is an in-toto Statement v1 whose predicate is one of the
models registered here. A predicate is strict (no coercion, no unknown fields),
frozen, and bounded (every string and list has a maximum size, every number is
finite). Its one canonical JSON form is ``model_dump(mode="json")`` serialised
with RFC 8785; :func:`parse_statement` accepts a statement only when its
predicate is already in that form and its subjects are the ones the predicate
implies, so one fact has exactly one payload and one digest.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
)

from redline.crypto.canonical import canonical_digest, canonical_json, canonical_json_owned, parse_json
from redline.crypto.dsse import (
    IN_TOTO_PAYLOAD_TYPE,
    STATEMENT_TYPE,
    Envelope,
    make_statement,
    sign_statement,
    validate_statement,
)
from redline.crypto.keys import SigningKey, VerifierKey, validate_key_name
from redline.errors import InvalidStatement, MalformedInput, NotAuthorized

# --- bounds -----------------------------------------------------------------

#: Largest integer that survives RFC 8785 (IEEE 754 doubles): 2**53 - 1.
MAX_SAFE_INT = 2**53 - 1
MAX_NAME = 128
MAX_LABEL = 256
MAX_TEXT = 4096
MAX_LIST = 1000
MAX_FLOP = 1e35
#: Chip-hours: 10^8 chips for 10^7 hours is still far below this.
MAX_HOURS = 1e15
#: Largest canonical predicate accepted (a log entry stays under 64 KiB).
MAX_PREDICATE_BYTES = 60 * 1024
#: Largest verifier-key string (name of at most 256 bytes + key ID + base64).
MAX_KEY_STRING = 512

URN_PREFIX = "urn:redline:"
_URN = re.compile(r"urn:redline:[a-z0-9]+(?:-[a-z0-9]+)*:v[1-9][0-9]*")


# --- shared bounded types ---------------------------------------------------


def _check_name(value: str) -> str:
    if value.isprintable() and " " not in value:  # the one printable whitespace character is the space
        return value
    for ch in value:
        if ch.isspace() or not ch.isprintable():
            raise ValueError(f"must be printable with no whitespace, found {ch!r}")
    return value


#: Party names already checked (a pure check; a log names few parties, many times over).
_GOOD_PARTIES: set[str] = set()
_GOOD_PARTIES_MAX = 4096


def _check_party(value: str) -> str:
    if value in _GOOD_PARTIES:
        return value
    _check_party_once(value)
    if len(_GOOD_PARTIES) < _GOOD_PARTIES_MAX:
        _GOOD_PARTIES.add(value)
    return value


def _check_party_once(value: str) -> str:
    _check_name(value)
    if "+" in value:
        raise ValueError("a party name (a key name) must not contain '+'")
    try:
        validate_key_name(value)
    except MalformedInput as exc:
        raise ValueError(str(exc)) from None
    return value


def _check_label(value: str) -> str:
    if value.isprintable():
        if value != value.strip():
            raise ValueError("must not start or end with whitespace")
        return value
    for ch in value:
        if not ch.isprintable():
            raise ValueError(f"must be printable on one line, found {ch!r}")
    if value != value.strip():
        raise ValueError("must not start or end with whitespace")
    return value


#: Control characters (Unicode category Cc) other than newline and tab, and lone surrogates (Cs).
_NOT_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _check_text(value: str) -> str:
    if not _NOT_TEXT.search(value):
        return value
    for ch in value:
        if ch not in "\n\t" and unicodedata.category(ch) in ("Cc", "Cs"):
            raise ValueError(f"must not contain control characters or lone surrogates, found {ch!r}")
    return value


#: A short identifier: 1..128 printable characters, no whitespace (run IDs, model names, ...).
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME, description="1..128 printable characters, "
                            "no whitespace"), AfterValidator(_check_name)]
#: The name a party's key was admitted under: a ``Name`` that is also a valid key name (no '+').
PartyName = Annotated[str, Field(min_length=1, max_length=MAX_NAME, description="a party's key name: 1..128 "
                                 "printable characters, no whitespace, no '+'"), AfterValidator(_check_party)]
#: A human-readable one-line label: 1..256 printable characters (spaces allowed inside).
Label = Annotated[str, Field(min_length=1, max_length=MAX_LABEL, description="1..256 printable characters on "
                             "one line, no surrounding whitespace"), AfterValidator(_check_label)]
#: Free text: at most 4096 characters, newlines and tabs allowed, no other control characters.
Text = Annotated[str, Field(max_length=MAX_TEXT, description="at most 4096 characters; no control "
                            "characters other than newline and tab"), AfterValidator(_check_text)]
#: Non-empty free text.
NonEmptyText = Annotated[Text, Field(min_length=1)]
#: 64 lower-case hex digits: a SHA-256 (or other 256-bit) digest.
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="64 lower-case hex digits")]
#: Lower-case hex of 1..64 bytes.
HexBytes = Annotated[str, Field(pattern=r"^(?:[0-9a-f]{2}){1,64}$", description="lower-case hex of 1..64 bytes")]
DigestAlgorithm = Literal["sha256", "blake3"]
#: An artefact digest naming its algorithm: exactly one of ``sha256`` / ``blake3`` → 64 lower-case hex.
Digest = Annotated[dict[DigestAlgorithm, Sha256Hex], Field(min_length=1, max_length=1,
                                                           description="exactly one of sha256 or blake3")]
#: A FLOP count: finite, 0 ≤ x ≤ 1e35.
Flop = Annotated[float, Field(ge=0, le=MAX_FLOP, allow_inf_nan=False, description="FLOP, finite, 0..1e35")]
#: A finite float.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
#: A probability in [0, 1].
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
#: A non-negative integer that survives JSON: 0 ≤ n ≤ 2**53 - 1.
Count = Annotated[int, Field(ge=0, le=MAX_SAFE_INT)]
#: A per-party sequence number: 1 ≤ n ≤ 2**53 - 1.
Seq = Annotated[int, Field(ge=1, le=MAX_SAFE_INT)]
#: Non-negative, finite hours (chip-hours).
Hours = Annotated[float, Field(ge=0, le=MAX_HOURS, allow_inf_nan=False)]

_T = TypeVar("_T")
_Self = TypeVar("_Self", bound="Predicate")
#: A list of at most 1,000 items.
BoundedList = Annotated[list[_T], Field(max_length=MAX_LIST)]


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise ValueError(f"time out of range in UTC: {exc}") from None


def format_time(value: datetime) -> str:
    """The canonical text of a time: RFC 3339 in UTC with ``Z``, microseconds only when non-zero."""
    if value.tzinfo is UTC:  # every validated time (``_to_utc``): its text ends in "+00:00"
        return value.isoformat()[:-6] + "Z"
    return _to_utc(value).replace(tzinfo=None).isoformat() + "Z"


_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z$"

#: A timezone-aware time, normalised to UTC; written ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``.
Timestamp = Annotated[
    AwareDatetime,
    AfterValidator(_to_utc),
    PlainSerializer(format_time, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": _TIME_PATTERN,
                    "description": "RFC 3339 time in UTC with 'Z'; fractional seconds absent or exactly "
                                   "6 digits"}),
]


def verifier_key_string(value: str) -> VerifierKey:
    """Parse a verifier-key string for a validator, turning key errors into ``ValueError``."""
    try:
        return VerifierKey.from_string(value)
    except MalformedInput as exc:
        raise ValueError(f"not a valid verifier key: {exc}") from None


def _check_key_string(value: str) -> str:
    key = verifier_key_string(value)
    if key.to_string() != value:
        raise ValueError("verifier key string is not in canonical form")
    return value


#: A C2SP verifier-key string ``name+hexid+base64(alg||key)``.
VerifierKeyString = Annotated[str, Field(min_length=1, max_length=MAX_KEY_STRING,
                                         description="C2SP verifier key name+keyid+base64"),
                              AfterValidator(_check_key_string)]


def unique(items: Iterable[Any], key: Callable[[Any], Hashable], what: str) -> None:
    """Raise ``ValueError`` naming the first duplicate ``key(item)``."""
    seen: set[Hashable] = set()
    for item in items:
        k = key(item)
        if k in seen:
            raise ValueError(f"duplicate {what} {k!r}")
        seen.add(k)


# --- models -----------------------------------------------------------------


class Model(BaseModel):
    """Base of every nested predicate part: strict, frozen, no unknown fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, protected_namespaces=(),
                              json_schema_serialization_defaults_required=True)


class Predicate(Model):
    """Base of every redline predicate: who says it (``party``), its place in their sequence (``seq``) and the
    log it is for (``log``, the log's origin: a statement is accepted by that log alone)."""

    PREDICATE_TYPE: ClassVar[str]
    KIND: ClassVar[str]

    party: PartyName = Field(description="the speaking party: the key name it was admitted under")
    seq: Seq = Field(description="the party's sequence number; strictly increasing per party")
    log: Label | None = Field(default=None, description="the origin of the log the statement is for (its "
                              "checkpoints' first line); every other log refuses it")

    @classmethod
    def build(cls: type[_Self], **fields: Any) -> _Self:
        """Construct and validate from Python values; failures raise ``InvalidStatement`` naming the field.

        (Calling the class directly raises pydantic's ``ValidationError`` instead.)
        """
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise InvalidStatement(validation_message(cls.PREDICATE_TYPE, exc)) from None

    @classmethod
    def from_json_obj(cls: type[_Self], obj: Any) -> _Self:
        """Validate a hand-written JSON object (e.g. from a CLI or a form) as this predicate type.

        Unlike :func:`parse_statement` this does not insist on the canonical form:
        times may carry any UTC offset and optional fields may be left out. The
        result, once signed, is canonical. Failures raise ``InvalidStatement``.
        """
        if not isinstance(obj, dict):
            raise InvalidStatement(f"{cls.PREDICATE_TYPE}: predicate must be a JSON object")
        try:
            raw = canonical_json(json_doubles(obj))
        except MalformedInput as exc:
            where = _unencodable_path(obj)
            raise InvalidStatement(f"{cls.PREDICATE_TYPE}: " + (f"field '{where}': " if where else "") + str(exc)) \
                from None
        except RecursionError:
            raise InvalidStatement(f"{cls.PREDICATE_TYPE}: predicate is nested too deeply") from None
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise InvalidStatement(validation_message(cls.PREDICATE_TYPE, exc)) from None

    def to_json_obj(self) -> dict[str, Any]:
        """The predicate's canonical JSON object (every field, ``null`` when absent)."""
        return self.model_dump(mode="json")

    @property
    def digest(self) -> str:
        """Hex SHA-256 of the predicate's RFC 8785 canonical JSON."""
        return predicate_digest(self)

    def statement_name(self) -> str:
        """The name of this statement's own subject: ``party/KIND/seq``."""
        return f"{self.party}/{self.KIND}/{self.seq}"

    def subjects(self) -> list[dict[str, Any]]:
        """The in-toto subjects: first the statement itself, then whatever artefacts it is about."""
        return [{"name": self.statement_name(), "digest": {"sha256": self.digest}}]


#: Every registered predicate type by URN.
PREDICATE_TYPES: dict[str, type[Predicate]] = {}
#: Every registered predicate type by short kind.
PREDICATE_KINDS: dict[str, type[Predicate]] = {}

_P = TypeVar("_P", bound=type[Predicate])


def register(cls: _P) -> _P:
    """Class decorator: add a predicate model to the registry under its URN and kind."""
    ptype = cls.__dict__.get("PREDICATE_TYPE")
    kind = cls.__dict__.get("KIND")
    if not isinstance(ptype, str) or not _URN.fullmatch(ptype):
        raise TypeError(f"{cls.__name__}: PREDICATE_TYPE must be a URN like 'urn:redline:name:v1', got {ptype!r}")
    if not isinstance(kind, str) or not kind or not all(c.isalnum() or c == "-" for c in kind):
        raise TypeError(f"{cls.__name__}: KIND must be a short name of letters, digits and '-', got {kind!r}")
    if not (cls.__doc__ or "").strip():
        raise TypeError(f"{cls.__name__}: a predicate model needs a docstring saying what it means")
    for table, key in ((PREDICATE_TYPES, ptype), (PREDICATE_KINDS, kind)):
        if key in table and table[key] is not cls:
            raise TypeError(f"{cls.__name__}: {key!r} is already registered by {table[key].__name__}")
    PREDICATE_TYPES[ptype] = cls
    PREDICATE_KINDS[kind] = cls
    return cls


# --- errors -----------------------------------------------------------------


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(err: Mapping[str, Any]) -> str:
    kind = err.get("type")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    msg = str(err.get("msg", "invalid"))
    return msg.removeprefix("Value error, ")


def validation_message(ptype: str, exc: ValidationError, limit: int = 3) -> str:
    """``<type>: field '<path>': <problem>`` for the first few errors of a validation failure."""
    errors = exc.errors(include_url=False, include_input=False)
    parts = []
    for err in errors[:limit]:
        path = _path(err.get("loc", ()))
        parts.append(f"field '{path}': {_message(err)}" if path else _message(err))
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return f"{ptype}: " + "; ".join(parts) + more


def json_doubles(value: Any) -> Any:
    """``value`` with every integer beyond ±(2**53 - 1) replaced by the double it denotes.

    RFC 8785 numbers are doubles: the canonical text of the double 1e20 is
    ``100000000000000000000``, which a JSON parser reads back as an integer. This
    reads it as ``redline.crypto.canonical.parse_json`` does, so it canonicalises again.
    Integers too large for a double are left alone (and then fail to canonicalise).
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INT:
            try:
                return float(value)
            except OverflowError:
                return value
        return value
    if isinstance(value, dict):
        return {k: json_doubles(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_doubles(v) for v in value]
    return value


def _unencodable_path(value: Any, path: str = "") -> str | None:
    """The path of the first value inside ``value`` that RFC 8785 cannot encode (NaN, 2**53, ...)."""
    if isinstance(value, dict):
        items: Iterable[tuple[str, Any]] = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        try:
            canonical_json(value)
        except MalformedInput:
            return path
        return None
    for sub, v in items:
        found = _unencodable_path(v, sub)
        if found is not None:
            return found
    return None


def _same(a: Any, b: Any) -> bool:
    try:
        return canonical_json(a) == canonical_json(b)
    except (MalformedInput, RecursionError):
        return False


def _first_difference(got: Any, want: Any, path: str = "") -> str:
    def short(v: Any) -> str:
        try:
            text = canonical_json(v).decode("utf-8", "replace")
        except MalformedInput:
            text = repr(v)
        return text if len(text) <= 80 else text[:77] + "..."

    where = f"field '{path}'" if path else "predicate"
    if isinstance(got, dict) and isinstance(want, dict):
        for k in sorted(set(got) | set(want)):
            sub = f"{path}.{k}" if path else k
            if k not in got:
                return f"field '{sub}' is missing (the canonical form writes it as {short(want[k])})"
            if k not in want:
                return f"field '{sub}' is not in the canonical form"
            if not _same(got[k], want[k]):
                return _first_difference(got[k], want[k], sub)
    if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        for i, (g, w) in enumerate(zip(got, want)):
            if not _same(g, w):
                return _first_difference(g, w, f"{path}[{i}]")
    return f"{where} is {short(got)}, the canonical form is {short(want)}"


# --- the statement codec ----------------------------------------------------


#: (id of a predicate, its digest) while :func:`_parse_payload_fast` has just computed it.
_KNOWN_DIGEST: ContextVar[tuple[int, str] | None] = ContextVar("_KNOWN_DIGEST", default=None)


def predicate_digest(pred: Predicate) -> str:
    """Hex SHA-256 of the RFC 8785 canonical JSON of the predicate."""
    known = _KNOWN_DIGEST.get()
    if known is not None and known[0] == id(pred):
        return known[1]
    return canonical_digest(pred.model_dump(mode="json"))


def to_statement(pred: Predicate) -> dict[str, Any]:
    """The in-toto Statement v1 carrying ``pred``."""
    if type(pred) not in PREDICATE_TYPES.values():
        raise InvalidStatement(f"{type(pred).__name__} is not a registered predicate type")
    subjects = [(s["name"], s["digest"]) for s in pred.subjects()]
    return make_statement(subjects, pred.PREDICATE_TYPE, pred.model_dump(mode="json"))


def parse_predicate(predicate_type: str, predicate: Any) -> Predicate:
    """Validate a predicate JSON object as ``predicate_type``; every failure is ``InvalidStatement``."""
    cls = PREDICATE_TYPES.get(predicate_type) if isinstance(predicate_type, str) else None
    if cls is None:
        known = ", ".join(sorted(PREDICATE_TYPES))
        raise InvalidStatement(f"unknown predicate type {predicate_type!r} (known: {known})")
    if not isinstance(predicate, dict):
        raise InvalidStatement(f"{predicate_type}: predicate must be a JSON object")
    try:
        predicate = json_doubles(predicate)
        raw = canonical_json(predicate)
    except MalformedInput as exc:
        where = _unencodable_path(predicate)
        prefix = f"field '{where}': " if where else ""
        raise InvalidStatement(f"{predicate_type}: {prefix}{exc}") from exc
    except RecursionError:
        raise InvalidStatement(f"{predicate_type}: predicate is nested too deeply") from None
    if len(raw) > MAX_PREDICATE_BYTES:
        raise InvalidStatement(f"{predicate_type}: predicate is {len(raw)} bytes of canonical JSON, "
                               f"over the limit of {MAX_PREDICATE_BYTES}")
    try:
        pred = cls.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidStatement(validation_message(predicate_type, exc)) from None
    canonical = pred.model_dump(mode="json")
    if canonical_json(canonical) != raw:
        raise InvalidStatement(f"{predicate_type}: predicate is not in canonical form: "
                               f"{_first_difference(predicate, canonical)}")
    return pred


def parse_statement(statement: Any, *, unknown_fields: bool = False) -> Predicate:
    """Validate an in-toto statement and return its predicate model.

    Raises ``InvalidStatement`` naming the predicate type and the field for every
    problem: a malformed statement, an unknown predicate type, a predicate that
    fails validation or is not in canonical form, subjects that are not the ones
    the predicate implies. Unknown top-level statement fields are refused unless
    ``unknown_fields`` (then ignored, as in-toto asks of consumers); unknown
    predicate fields are always refused (predicates are strict schemas).
    """
    try:
        validate_statement(statement, unknown_fields=unknown_fields)
    except InvalidStatement:
        raise
    except MalformedInput as exc:
        raise InvalidStatement(str(exc)) from exc
    ptype = statement["predicateType"]
    pred = parse_predicate(ptype, statement["predicate"])
    want = pred.subjects()
    if statement["subject"] != want:
        raise InvalidStatement(f"{ptype}: subjects do not match the predicate: "
                               f"{_first_difference(statement['subject'], want, 'subject')}")
    return pred


#: How every canonical in-toto statement payload begins (its keys sort as ``_type``, ``predicate``, ...).
_STATEMENT_HEAD = b'{"_type":' + canonical_json(STATEMENT_TYPE) + b',"predicate":{'
#: What separates the predicate from the predicate type, and the predicate type from the subjects.
_TYPE_MARK = b',"predicateType":"'
_SUBJECT_MARK = b'","subject":'


_SUBJECT_FIELDS = {"name", "digest"}


def _subjects_json(subjects: list[dict[str, Any]]) -> bytes | None:
    """``canonical_json`` of in-toto subjects (string names, string digests under ASCII algorithm names), or None.

    Written by ``orjson``, which escapes strings exactly as RFC 8785 does and sorts keys in its order for
    these (``digest`` before ``name``, algorithms in ASCII order, which UTF-16 order agrees with). Subjects of
    any other shape, or text no encoder can write (a lone surrogate), are None: the slow path decides.
    """
    if type(subjects) is not list:
        return None
    for s in subjects:
        if type(s) is not dict or s.keys() != _SUBJECT_FIELDS or type(s["name"]) is not str:
            return None
        digest = s["digest"]
        if type(digest) is not dict or not digest:
            return None
        for alg, value in digest.items():
            if type(alg) is not str or not alg.isascii() or type(value) is not str:
                return None
    try:
        return orjson.dumps(subjects, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError
        return None


#: ``canonical_json(cls.PREDICATE_TYPE)`` by predicate class, worked out once.
_TYPE_JSON: dict[type[Predicate], bytes] = {}


def _parse_payload_fast(payload: bytes) -> tuple[Predicate, bytes] | None:
    """The predicate and its canonical bytes, if ``payload`` is byte for byte the canonical statement it implies;
    else None.

    One serialisation replaces the four separate checks of ``open_statement`` and
    :func:`parse_statement` (canonical payload, canonical predicate, normal form,
    subjects): the payload is cut where the canonical statement of a predicate of this
    type puts its parts (the predicate, its type, its subjects), the predicate is
    validated from its own bytes, and the payload is accepted only when it is exactly
    ``{"_type":…,"predicate":P,"predicateType":T,"subject":S}`` with ``P`` the canonical
    JSON of the validated predicate, ``T`` its registered type and ``S`` the canonical
    JSON of the subjects it implies. Then each of the four checks holds (and the slow
    path would validate the very same predicate bytes ``P``). Anything else goes the
    slow way, which names the problem.
    """
    try:
        if not payload.startswith(_STATEMENT_HEAD) or payload[-1:] != b"}":
            return None
        cut = payload.rfind(_TYPE_MARK)
        if cut < 0:
            return None
        begin = len(_STATEMENT_HEAD) - 1
        raw = payload[begin:cut]
        if len(raw) > MAX_PREDICATE_BYTES:
            return None
        type_start = cut + len(_TYPE_MARK)
        type_end = payload.find(_SUBJECT_MARK, type_start)
        if type_end < 0:
            return None
        cls = PREDICATE_TYPES.get(payload[type_start:type_end].decode("ascii"))
        if cls is None:
            return None
        pred = cls.__pydantic_validator__.validate_json(raw)  # cls.model_validate_json(raw)
        # canonical_json(pred.model_dump(mode="json")), on the dump made for it
        if canonical_json_owned(cls.__pydantic_serializer__.to_python(pred, mode="json")) != raw:
            return None
        token = _KNOWN_DIGEST.set((id(pred), hashlib.sha256(raw).hexdigest()))
        try:
            subjects = _subjects_json(pred.subjects())
        finally:
            _KNOWN_DIGEST.reset(token)
        if subjects is None or payload[type_end + len(_SUBJECT_MARK):-1] != subjects:
            return None
        type_json = _TYPE_JSON.get(cls)
        if type_json is None:
            type_json = _TYPE_JSON[cls] = canonical_json(cls.PREDICATE_TYPE)
        if payload[type_start - 1:type_end + 1] != type_json:
            return None
        return pred, raw
    except Exception:  # any doubt: the slow path decides and explains
        return None


def parse_payload(payload: bytes) -> Predicate:
    """Parse a DSSE payload as a redline statement: exactly :func:`parse_statement` (unknown fields ignored) of
    ``open_statement``'s result."""
    return parse_payload_canonical(payload)[0]


def parse_payload_canonical(payload: bytes) -> tuple[Predicate, bytes]:
    """:func:`parse_payload`, with the predicate's canonical JSON bytes (what its digest is the SHA-256 of).

    ``PREDICATE_TYPES[pred.PREDICATE_TYPE].model_validate_json(raw)`` gives the same predicate again.
    """
    fast = _parse_payload_fast(payload)
    if fast is not None:
        return fast
    # Unknown top-level fields are ignored (in-toto: consumers must), but the payload must still be the
    # RFC 8785 form of the whole object, so the signed bytes stay the one canonical text of what they say.
    statement = validate_statement(parse_json(payload, what="in-toto statement"), unknown_fields=True)
    if canonical_json(statement) != payload:
        raise MalformedInput("in-toto statement payload is not in RFC 8785 canonical form")
    pred = parse_statement(statement, unknown_fields=True)
    return pred, canonical_json(statement["predicate"])


def open_predicate(env: Envelope, keys: Iterable[VerifierKey]) -> tuple[Predicate, VerifierKey]:
    """Verify ``env`` against ``keys`` and parse its statement: ``open_statement`` then ``parse_statement``, in one
    pass."""
    signer = env.verify(keys)
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise MalformedInput(f"DSSE payloadType is {env.payload_type!r}, expected {IN_TOTO_PAYLOAD_TYPE!r}")
    return parse_payload(env.payload), signer


def sign_predicate(pred: Predicate, key: SigningKey, *, log: str | None = None) -> Envelope:
    """Sign ``pred`` as an in-toto statement in a DSSE envelope; the key's name must be ``pred.party``.

    ``log`` (the origin of the log the statement is for) fills ``pred.log`` when it is not set, and must equal it
    when it is.
    """
    if key.name != pred.party:
        raise NotAuthorized(f"key {key.name!r} cannot sign for party {pred.party!r}")
    if log is not None:
        if pred.log is None:
            pred = type(pred).build(**{**pred.model_dump(), "log": log})
        elif pred.log != log:
            raise InvalidStatement(f"field 'log': the statement is for log {pred.log!r}, not {log!r}")
    statement = to_statement(pred)
    parse_statement(statement)  # refuse to sign what a verifier would refuse (e.g. a model_construct'ed model)
    return sign_statement(statement, key)


def open_envelope(env: Envelope, keys: Iterable[VerifierKey]) -> tuple[Predicate, VerifierKey]:
    """Verify ``env`` against ``keys``, parse its statement, and return the predicate and its signer.

    The signer's key name must be the predicate's ``party`` (``NotAuthorized`` otherwise).
    Whether that party may make this kind of statement is the registry's decision.
    """
    pred, signer = open_predicate(env, keys)
    if signer.name != pred.party:
        raise NotAuthorized(f"{pred.PREDICATE_TYPE}: statement speaks for party {pred.party!r} "
                            f"but is signed by key {signer.name!r}")
    return pred, signer


__all__ = [
    "BoundedList", "Count", "Digest", "FiniteFloat", "Flop", "HexBytes", "Hours", "Label", "MAX_FLOP", "MAX_LABEL",
    "MAX_LIST", "MAX_NAME", "MAX_PREDICATE_BYTES", "MAX_SAFE_INT", "MAX_TEXT", "Model", "Name", "NonEmptyText",
    "PREDICATE_KINDS", "PREDICATE_TYPES", "PartyName", "Predicate", "Probability", "Seq", "Sha256Hex", "Text",
    "Timestamp", "VerifierKeyString", "format_time", "json_doubles", "open_envelope", "open_predicate", "parse_payload",
    "parse_payload_canonical", "parse_predicate",
    "parse_statement", "predicate_digest", "register", "sign_predicate", "to_statement", "unique",
    "verifier_key_string",
]
