"""The one error hierarchy of redline.

Every error names what is wrong: the field, the entry index, the key or the file.
Faces turn these into messages and exit codes; nothing else in redline raises
bare ``ValueError`` across a module boundary.
"""

from __future__ import annotations


class RedlineError(Exception):
    """Base of every error redline raises on purpose."""

    exit_code = 1


# --- encoding and parsing -------------------------------------------------


class MalformedInput(RedlineError):
    """Bytes that do not parse as the format they claim to be."""

    exit_code = 65  # EX_DATAERR


class InputTooLarge(MalformedInput):
    """An input over its documented size bound."""


class NonCanonicalJSON(MalformedInput):
    """JSON that cannot be put in RFC 8785 canonical form (e.g. NaN, lone surrogates)."""


# --- keys and signatures --------------------------------------------------


class KeyMaterialError(RedlineError):
    """A key that is malformed, missing or unusable."""

    exit_code = 66


class MalformedKey(KeyMaterialError, MalformedInput):
    """A key string or file that does not parse."""


class KeyExists(KeyMaterialError):
    """Refusing to overwrite an existing key file."""

    exit_code = 73  # EX_CANTCREAT


class InsecureKeyFile(KeyMaterialError):
    """A private key file readable by others than its owner."""


class BadSignature(RedlineError):
    """A signature that does not verify, or no signature from a trusted key."""

    exit_code = 3


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
    """A log whose stored tree disagrees with itself, its checkpoint or an earlier checkpoint."""

    exit_code = 6

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class SplitView(InconsistentLog):
    """Two checkpoints signed by the log's key that cannot both be true: same size with different roots, or a
    newer tree that does not extend the older one. The log showed different histories to different readers."""

    exit_code = 11


class Rollback(InconsistentLog):
    """A log serving a smaller tree than a checkpoint it has already signed and a reader remembers."""

    exit_code = 12


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


# --- statements and submission (later issues build on these) -------------


class InvalidStatement(MalformedInput):
    """A statement that fails validation; the message names the field."""


class InvalidPolicy(MalformedInput):
    """A danger-line policy that fails validation (unknown metric, bad comparator, ...)."""


class SequenceError(InvalidStatement):
    """A statement whose sequence number replays or skips the party's last one."""


class NotAuthorized(RedlineError):
    """A party acting outside its role."""

    exit_code = 7


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

    def __init__(self, message: str, *, field: str | None = None, name: str | None = None,
                 group: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.name = name
        self.group = group


class UnregisteredFactory(UntrustedCode):
    """A factory name that no installed distribution registers in the field's entry-point group."""


class AmbiguousFactory(UntrustedCode):
    """A factory name that more than one installed distribution registers in the same entry-point group."""

    def __init__(self, message: str, *, field: str, name: str, group: str, distributions: list[str]) -> None:
        super().__init__(message, field=field, name=name, group=group)
        self.distributions = distributions


class FactoryPinMismatch(UntrustedCode):
    """A registered factory whose distribution, version or files digest is not the one the declaration pins.

    ``what`` is the pinned part that differs (``distribution``, ``version`` or ``files_digest``); ``want`` is the
    declaration's value and ``got`` this machine's.
    """

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
