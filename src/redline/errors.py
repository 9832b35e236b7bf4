"""The one error hierarchy of redline.

Every error names what is wrong: the field, the entry index, the key or the file.
Faces turn these into messages and exit codes; nothing else in redline raises
bare ``ValueError`` across a module boundary.

Besides its message, an error carries what it names as structured fields, as Go's
``note.InvalidSignatureError{Name, Hash}`` does: ``BadSignature.key_name``,
``InputTooLarge.size`` and ``.limit``, ``SequenceError.expected``, ... Each class
lists its own in ``FIELDS``; they are keyword-only, None when the raiser did not
know them, and ``to_dict`` gives ``{"error": class name, "message": ..., **fields}``
(every field of the class and its bases) for JSON faces. The message text is the
same with or without them.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar


def _restore(cls: type[RedlineError], args: tuple[Any, ...], state: dict[str, Any]) -> RedlineError:
    """Unpickle a ``RedlineError`` without calling its ``__init__`` (whose keyword fields it may require)."""
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class RedlineError(Exception):
    """Base of every error redline raises on purpose."""

    exit_code = 1
    #: The structured fields this class adds to its bases' (attributes of every instance, None when unknown).
    FIELDS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Every structured field of this class, its bases' first."""
        names: dict[str, None] = {}
        for klass in reversed(cls.__mro__):
            for name in vars(klass).get("FIELDS", ()):
                names[name] = None
        return tuple(names)

    def to_dict(self) -> dict[str, Any]:
        """``{"error": class name, "message": the message, **fields}``, JSON-able (bytes as hex)."""
        out: dict[str, Any] = {"error": type(self).__name__, "message": str(self)}
        for name in self.field_names():
            value = getattr(self, name, None)
            out[name] = value.hex() if isinstance(value, bytes) else value
        return out

    def fields(self) -> dict[str, Any]:
        """The structured fields that are known (not None), as ``to_dict`` gives them."""
        return {k: v for k, v in self.to_dict().items() if k not in ("error", "message") and v is not None}

    def __reduce__(self) -> tuple[Any, ...]:
        return _restore, (type(self), self.args, dict(self.__dict__))


# --- encoding and parsing -------------------------------------------------


class MalformedInput(RedlineError):
    """Bytes that do not parse as the format they claim to be. ``path``: the file they came from, when one did."""

    exit_code = 65  # EX_DATAERR
    FIELDS: ClassVar[tuple[str, ...]] = ("path",)

    def __init__(self, message: str = "", *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class InputTooLarge(MalformedInput):
    """An input over its documented size bound: ``size`` bytes (None: not known, e.g. read from a pipe until
    it went over) against a bound of ``limit``."""

    FIELDS: ClassVar[tuple[str, ...]] = ("size", "limit")

    def __init__(self, message: str = "", *, size: int | None = None, limit: int | None = None,
                 path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.size = size
        self.limit = limit


class NonCanonicalJSON(MalformedInput):
    """JSON that cannot be put in RFC 8785 canonical form (e.g. NaN, lone surrogates)."""


# --- keys and signatures --------------------------------------------------


class KeyMaterialError(RedlineError):
    """A key that is malformed, missing or unusable; ``path`` the key file, when one is named."""

    exit_code = 66
    FIELDS: ClassVar[tuple[str, ...]] = ("path",)

    def __init__(self, message: str = "", *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class MalformedKey(KeyMaterialError, MalformedInput):
    """A key string or file that does not parse."""


class KeyExists(KeyMaterialError):
    """Refusing to overwrite an existing key file."""

    exit_code = 73  # EX_CANTCREAT


class InsecureKeyFile(KeyMaterialError):
    """A private key file readable by others than its owner."""


class BadSignature(RedlineError):
    """A signature that does not verify, or no signature from a trusted key.

    ``key_name`` and ``key_id`` name the key whose signature failed (as Go's ``note.InvalidSignatureError{Name,
    Hash}``): for a signed note the key name and the 4-byte key ID in hex (Go's ``%08x``), for a DSSE envelope
    the key's name and its ``keyid`` (the hex fingerprint).
    """

    exit_code = 3
    FIELDS: ClassVar[tuple[str, ...]] = ("key_name", "key_id")

    def __init__(self, message: str = "", *, key_name: str | None = None, key_id: str | None = None) -> None:
        super().__init__(message)
        self.key_name = key_name
        self.key_id = key_id


class UnknownKey(BadSignature):
    """Signed only by keys the verifier does not know."""


# --- the log --------------------------------------------------------------


class LogError(RedlineError):
    """A problem with the transparency log."""

    exit_code = 4


class EntryTooLarge(LogError, InputTooLarge):
    """An entry over the log's entry size bound."""

    exit_code = 65  # bad input, though raised by the log


class InvalidProof(LogError):
    """An inclusion or consistency proof that does not verify."""

    exit_code = 5


class InconsistentLog(LogError):
    """A log whose stored tree disagrees with itself, its checkpoint or an earlier checkpoint; ``index`` the entry
    (or tree size) where it does."""

    exit_code = 6
    FIELDS: ClassVar[tuple[str, ...]] = ("index",)

    def __init__(self, message: str = "", index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class SplitView(InconsistentLog):
    """Two checkpoints signed by the log's key that cannot both be true: same size with different roots, or a
    newer tree that does not extend the older one. The log showed different histories to different readers."""

    exit_code = 11


class Rollback(InconsistentLog):
    """A log serving a smaller tree than a checkpoint it has already signed and a reader remembers."""

    exit_code = 12


class StaleLog(InconsistentLog):
    """Another writer appended to the store since this ``Log`` last read it: nothing was written. The log is
    fine; call ``Log.refresh()`` (or append inside ``Log.writing()``) and try again."""


class RolledBack(InconsistentLog):
    """The store holds fewer entries than an earlier verification of it saw: it was rolled back, or restored
    from an older copy. Refused: only a full verification (``verify_store``) accepts such a store again."""


class LogNotFound(LogError):
    """No log at the given path."""


class LogExists(LogError):
    """A log already exists where a new one was asked for."""


class StaleCache(LogError):
    """A local cache file (a state snapshot, a verification record) that cannot be used: missing its seal, edited,
    made for another log or by other code. Callers fall back to the full work; it never reaches a user as a
    failure."""


class IndexOutOfRange(LogError):
    """An entry index or tree size beyond the log."""


class StoreUnavailable(LogError):
    """The log's database cannot be reached (or the connection broke); nothing in flight was acknowledged."""


class FetchError(LogError):
    """A request to a remote log that failed: unreachable, timed out, an HTTP error or a response over its bound.

    ``url`` is the address asked for and ``status`` the HTTP status (None where no answer came).
    """

    FIELDS: ClassVar[tuple[str, ...]] = ("url", "status")

    def __init__(self, message: str = "", *, url: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class QueueFull(RedlineError):
    """A server's submission queue is full (HTTP 429: retry later)."""


# --- statements and submission (later issues build on these) -------------


#: A message that names its field: ``field 'x': ...``, perhaps after the predicate type (``<type>: field 'x': ...``).
_FIELD_IN_MESSAGE = re.compile(r"(?:[^ ]+: )?field '([^']+)'")


class InvalidStatement(MalformedInput):
    """A statement that fails validation; the message names the field.

    ``field`` is the field's path (``run_id``, ``spec.init.base_model_digest``): given, or else read from a
    message that starts ``field '<path>'`` (after the predicate type, if any), as redline's messages do.
    """

    FIELDS: ClassVar[tuple[str, ...]] = ("field",)

    def __init__(self, message: str = "", *, field: str | None = None, path: str | None = None) -> None:
        super().__init__(message, path=path)
        if field is None:
            named = _FIELD_IN_MESSAGE.match(message)
            field = named.group(1) if named is not None else None
        self.field = field


class InvalidPolicy(MalformedInput):
    """A danger-line policy that fails validation (unknown metric, bad comparator, ...)."""


class SequenceError(InvalidStatement):
    """A statement whose sequence number replays or skips the party's last one: ``party`` sent ``got`` where
    ``expected`` was next (``field`` is ``seq``)."""

    FIELDS: ClassVar[tuple[str, ...]] = ("party", "expected", "got")

    def __init__(self, message: str = "", *, party: str | None = None, expected: int | None = None,
                 got: int | None = None, field: str | None = "seq") -> None:
        super().__init__(message, field=field)
        self.party = party
        self.expected = expected
        self.got = got


class NotAuthorized(RedlineError):
    """A party acting outside its role: ``party`` (the party, or the key's name, that acted) and ``role`` (its
    role, when it has one)."""

    exit_code = 7
    FIELDS: ClassVar[tuple[str, ...]] = ("party", "role")

    def __init__(self, message: str = "", *, party: str | None = None, role: str | None = None) -> None:
        super().__init__(message)
        self.party = party
        self.role = role


class UnknownParty(NotAuthorized):
    """A statement signed by a key that no admitted party holds."""


class RevokedKey(NotAuthorized):
    """A statement signed by a key that has been revoked or rotated away."""


# --- code a run declaration names -----------------------------------------


class UntrustedCode(MalformedInput):
    """Code a declaration names that this machine will not run: unregistered, ambiguous or not as pinned.

    ``field`` is the declaration field (``model_factory``, ``optimizer``, ...), ``name`` the factory name and
    ``group`` the entry-point group it is looked up in (None where the field itself is unknown).
    """

    FIELDS: ClassVar[tuple[str, ...]] = ("field", "name", "group")

    def __init__(self, message: str = "", *, field: str | None = None, name: str | None = None,
                 group: str | None = None, path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.field = field
        self.name = name
        self.group = group


class UnregisteredFactory(UntrustedCode):
    """A factory name that no installed distribution registers in the field's entry-point group."""


class AmbiguousFactory(UntrustedCode):
    """A factory name that more than one installed distribution registers in the same entry-point group."""

    FIELDS: ClassVar[tuple[str, ...]] = ("distributions",)

    def __init__(self, message: str, *, field: str, name: str, group: str, distributions: list[str]) -> None:
        super().__init__(message, field=field, name=name, group=group)
        self.distributions = distributions


class FactoryPinMismatch(UntrustedCode):
    """A registered factory whose distribution, version or files digest is not the one the declaration pins.

    ``what`` is the pinned part that differs (``distribution``, ``version`` or ``files_digest``); ``want`` is the
    declaration's value and ``got`` this machine's.
    """

    FIELDS: ClassVar[tuple[str, ...]] = ("what", "want", "got")

    def __init__(self, message: str, *, field: str, name: str, group: str, what: str, want: str,
                 got: str | None) -> None:
        super().__init__(message, field=field, name=name, group=group)
        self.what = what
        self.want = want
        self.got = got


# --- witnesses and cosignatures (c2sp.org/tlog-witness, tlog-cosignature) --


class WitnessError(RedlineError):
    """A witness, cosignature or witness-policy problem."""

    exit_code = 9


class PolicyNotMet(WitnessError):
    """Fewer valid cosignatures than the witness policy's threshold (k of n)."""


class WitnessRefused(WitnessError):
    """A witness answered an add-checkpoint request with an error status.

    ``status`` is the HTTP status (0 where no answer came) and ``size`` the tree
    size a 409 answer named (else None).
    """

    FIELDS: ClassVar[tuple[str, ...]] = ("status", "size")

    def __init__(self, message: str, *, status: int = 0, size: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.size = size


class LogClockAhead(WitnessError):
    """A checkpoint whose entries' integration times run ahead of its witnesses' cosignature times."""

    exit_code = 10


# --- indicators: AI code share from git history (redline.indicators.codeshare) --


class CodeShareError(RedlineError):
    """A code-share measurement that cannot be made as asked (the message says why)."""


class NotARepository(CodeShareError):
    """A path that is not a git repository (or a revision that is not in it)."""


class HistoryMissing(CodeShareError):
    """History the measurement needs is absent, e.g. a shallow clone cut inside the window."""


class EmptyWindow(CodeShareError):
    """Nothing to measure: no commits, or no countable lines, in the window."""


class GitFailed(CodeShareError):
    """A git command failed unexpectedly."""


class MalformedEvidence(MalformedInput):
    """A git-ai note, an Agent Trace record, a rule file or a repository declaration that does not parse."""
