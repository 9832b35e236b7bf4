"""State snapshots: a :class:`~redline.engine.state.State` to bytes and back, exactly.

A snapshot lets a reader replay only the entries after it instead of the whole log
(``redline.statecache`` keeps them, sealed, beside the log). It must give back
the very state the replay had reached, derived indexes included (the open
obligations, the transcript roots, the parsed policies...), and with the same
sharing between objects (an open obligation is the same object as the one in
``obligations``), so that applying further entries to it gives exactly what a
full replay gives; ``tests/test_state_snapshot.py`` checks that at many cut points.

Pure and deterministic. :func:`encode` gives an :class:`Encoded`: a *body*, Python's
``marshal`` format (version 4) of plain values — every record of
``redline.engine.state`` a dict of its fields, each record once (later references
point at the first; ``marshal`` keeps that sharing), the parties' keys their key
strings, the parsed policies their canonical documents — and *blobs*: the big,
append-mostly parts (the timeline, the transcript roots) in chunks, which the body
names by position, so that a reader can check and decode them only when it needs
them (see ``LazyEvents``, ``LazyRoots``; runs too are kept one blob per run, decoded
when looked up: ``LazyRuns``). ``marshal`` is fast, but it is not meant for bytes
from others: :func:`decode` must be given only a body whose seal this user's redline
verified (``redline.log.localcache``) and blob loaders that check each blob against
the digest the seal covers; it refuses anything that is not exactly the shape
:func:`encode` writes (``MalformedInput``).
"""

from __future__ import annotations

import marshal
import sys
from abc import ABC, abstractmethod
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from redline.crypto.canonical import canonical_json, parse_json
from redline.crypto.keys import VerifierKey
from redline.engine.state import (
    Commitment,
    Crossing,
    Event,
    Obligation,
    Party,
    Pause,
    Rejection,
    Review,
    Run,
    State,
    Violation,
)
from redline.errors import MalformedInput, StaleCache
from redline.policy.model import policy_from_document

#: Bumped whenever the layout changes (the seal's header also names the code that wrote it).
FORMAT = 2
#: ``marshal``'s format version used (the one Python 3.11+ writes by default).
MARSHAL_VERSION = 4

#: The records a state holds, by the tag their encoding carries.
RECORDS: dict[str, type] = {cls.__name__: cls for cls in (
    Party, Run, Crossing, Obligation, Violation, Pause, Review, Commitment, Rejection, Event)}
_FIELDS: dict[type, tuple[str, ...]] = {cls: tuple(f.name for f in fields(cls)) for cls in RECORDS.values()}

#: How each field of ``State`` is stored: "plain" (marshal holds it as it is), a record kind ("list", "dict",
#: "dict2", with the record class), or special handling ("keys" for parties, "policies" for the parsed
#: policies, "derived" for what is rebuilt from the rest on demand).
_PLAIN = "plain"
SHAPES: dict[str, tuple[str, type | None]] = {
    "origin": (_PLAIN, None), "coordinator": (_PLAIN, None), "next_index": (_PLAIN, None),
    "last_time_ms": (_PLAIN, None), "parties": ("parties", Party), "keys": (_PLAIN, None),
    "retired_keys": (_PLAIN, None), "policies": (_PLAIN, None), "policy_objects": ("policies", None),
    "in_force": (_PLAIN, None), "line_index": ("derived", None), "runs": ("runs", Run), "models": (_PLAIN, None),
    "clusters": (_PLAIN, None), "indicators": (_PLAIN, None), "commitments": ("dict2", Commitment),
    "crossings": ("list", Crossing), "crossed": (_PLAIN, None), "pending_pause": (_PLAIN, None),
    "pauses": ("list", Pause), "obligations": ("list", Obligation), "open_obligations": ("list", Obligation),
    "next_due_ms": (_PLAIN, None), "usage_opened": (_PLAIN, None), "run_finish_due": ("dict", Obligation),
    "violations": ("list", Violation), "reviews": ("dict", Review), "attested": (_PLAIN, None),
    "attested_by_customer": (_PLAIN, None), "findings": (_PLAIN, None), "unregistered": (_PLAIN, None),
    "review_required": (_PLAIN, None), "releases": (_PLAIN, None), "bases": (_PLAIN, None),
    "spec_runs": (_PLAIN, None), "final_weights": (_PLAIN, None), "roots": ("roots", None),
    "rejected": ("list", Rejection), "timeline": ("events", Event), "judged_at_ms": (_PLAIN, None),
    "judged_margin_ms": (_PLAIN, None),
}


def _check_shapes() -> None:
    names = tuple(f.name for f in fields(State))
    if set(names) != set(SHAPES):
        missing, extra = sorted(set(names) - set(SHAPES)), sorted(set(SHAPES) - set(names))
        raise AssertionError(f"snapshot.SHAPES is out of step with State: missing {missing}, unknown {extra}")


_check_shapes()


# --- encoding ---------------------------------------------------------------------------------


class _Encoder:
    def __init__(self) -> None:
        self.memo: dict[int, dict[str, Any]] = {}
        self.keep: list[Any] = []  # the encoded records' originals stay alive, so their ids stay unique

    def record(self, obj: Any, cls: type) -> dict[str, Any]:
        if type(obj) is not cls:
            raise MalformedInput(f"state snapshot: expected a {cls.__name__}, found {type(obj).__name__}")
        out = self.memo.get(id(obj))
        if out is None:
            out = dict(vars(obj))
            out["__record__"] = cls.__name__
            if isinstance(obj, Party):
                out["key"] = obj.key.to_string()
            self.memo[id(obj)] = out
            self.keep.append(obj)
        return out


@dataclass(frozen=True)
class Encoded:
    """A snapshot: the body (decoded whole) and the blobs it names by position; ``late`` are the positions of the
    blobs :func:`decode` does not load (the timeline's: loaded when the timeline is first read)."""

    body: bytes
    blobs: list[bytes]
    late: frozenset[int] = frozenset()


def encode(state: State) -> Encoded:
    """The snapshot of ``state`` (``MalformedInput`` if it holds something a snapshot cannot keep)."""
    enc = _Encoder()
    blobs: list[bytes] = []

    def stored(chunks: list[bytes]) -> list[int]:
        blobs.extend(chunks)
        return list(range(len(blobs) - len(chunks), len(blobs)))

    late: set[int] = set()
    tree: dict[str, Any] = {}
    for name, (shape, cls) in SHAPES.items():
        value = getattr(state, name)
        if shape == _PLAIN:
            tree[name] = value
        elif shape == "derived":
            continue
        elif shape == "policies":
            tree[name] = {d: canonical_json(p.document()) for d, p in value.items()}
        elif shape == "events":
            tree[name] = stored(LazyEvents.chunks_of(value))
            late.update(tree[name])
        elif shape == "roots":
            tree[name] = stored(LazyRoots.chunks_of(value))
        elif shape == "runs":
            tree[name] = LazyRuns.pack(value)
        elif shape in ("list",):
            tree[name] = [enc.record(v, cls) for v in value]  # type: ignore[arg-type]
        elif shape in ("dict", "parties"):
            tree[name] = {k: enc.record(v, cls) for k, v in value.items()}  # type: ignore[arg-type]
        elif shape == "dict2":
            tree[name] = {k: {k2: enc.record(v, cls) for k2, v in inner.items()}  # type: ignore[arg-type]
                          for k, inner in value.items()}
    try:
        return Encoded(marshal.dumps((FORMAT, tree), MARSHAL_VERSION), blobs, frozenset(late))
    except ValueError as exc:
        raise MalformedInput(f"state snapshot: the state holds a value a snapshot cannot keep: {exc}") from None


# --- decoding ---------------------------------------------------------------------------------


class _Decoder:
    def __init__(self) -> None:
        self.memo: dict[int, Any] = {}
        self.keys: dict[str, VerifierKey] = {}

    def record(self, raw: Any, cls: type) -> Any:
        obj = self.memo.get(id(raw))
        if obj is not None:
            if type(obj) is not cls:
                raise MalformedInput(f"state snapshot: a {type(obj).__name__} where a {cls.__name__} belongs")
            return obj
        if type(raw) is not dict or raw.pop("__record__", None) != cls.__name__ or tuple(raw) != _FIELDS[cls]:
            raise MalformedInput(f"state snapshot: a {cls.__name__} record is malformed")
        if cls is Party:
            text = raw["key"]
            key = self.keys.get(text)
            if key is None:
                key = self.keys[text] = VerifierKey.from_string(text)
            raw["key"] = key
        made: Any = object.__new__(cls)
        made.__dict__ = raw  # the decoded dict is the record's fields, in declaration order
        self.memo[id(raw)] = made
        return made


def _typed(value: Any, kind: type, name: str) -> Any:
    if type(value) is not kind:
        raise MalformedInput(f"state snapshot: field {name!r} is not a {kind.__name__}")
    return value


def decode(data: bytes | memoryview, blobs: Sequence[Callable[[], bytes]] = (), *,
           recover_timeline: Callable[[Exception], list[Event]] | None = None) -> State:
    """The state :func:`encode` wrote into the body ``data`` (only ever bytes whose seal verified; see the module
    doc); ``blobs`` load the encoded blobs by position, each checked by the loader (the transcript roots' blobs are
    loaded here, the timeline's when it is first read). Should the timeline's blobs then fail their check
    (``StaleCache``) or not decode (``MalformedInput``), ``recover_timeline`` (given that error) is asked for the
    timeline the snapshot held instead, e.g. replayed from the log; without it, the error is raised."""

    def loaders(raw: Any, name: str) -> list[Callable[[], bytes]]:
        if type(raw) is not list or not all(type(i) is int and 0 <= i < len(blobs) for i in raw):
            raise MalformedInput(f"state snapshot: field {name!r} does not name its blobs")
        return [blobs[i] for i in raw]

    try:
        fmt, tree = marshal.loads(data)
    except (ValueError, EOFError, TypeError):
        raise MalformedInput("state snapshot: not a snapshot body") from None
    if fmt != FORMAT or type(tree) is not dict:
        raise MalformedInput(f"state snapshot: format {fmt!r}, this redline reads {FORMAT}")
    dec = _Decoder()
    values: dict[str, Any] = {}
    for name, (shape, cls) in SHAPES.items():
        if shape == "derived":
            values[name] = {}
            continue
        if name not in tree:
            raise MalformedInput(f"state snapshot: field {name!r} is missing")
        raw = tree[name]
        if shape == _PLAIN:
            values[name] = raw
        elif shape == "policies":
            values[name] = {d: _policy(d, doc) for d, doc in _typed(raw, dict, name).items()}
        elif shape == "events":
            values[name] = LazyEvents(loaders(raw, name), recover_timeline)
        elif shape == "roots":
            values[name] = LazyRoots([load() for load in loaders(raw, name)])
        elif shape == "runs":
            values[name] = LazyRuns(_typed(raw, dict, name))
        elif shape == "list":
            record: Callable[[Any, type], Any] = dec.record
            values[name] = [record(v, cls) for v in _typed(raw, list, name)]  # type: ignore[arg-type]
        elif shape in ("dict", "parties"):
            values[name] = {k: dec.record(v, cls) for k, v in _typed(raw, dict, name).items()}  # type: ignore[arg-type]
        elif shape == "dict2":
            values[name] = {k: {k2: dec.record(v, cls) for k2, v in _typed(inner, dict, name).items()}  # type: ignore[arg-type]
                            for k, inner in _typed(raw, dict, name).items()}
    if len(tree) != len(SHAPES) - sum(1 for s, _ in SHAPES.values() if s == "derived"):
        raise MalformedInput("state snapshot: unknown fields")
    state = object.__new__(State)
    state.__dict__ = {f.name: values[f.name] for f in fields(State)}
    return state



# --- the two collections that grow with every entry: read only when asked for ------------------------------------
#
# The timeline (one event per accepted entry) and the transcript roots (three per run declaration) are most of a
# big state. A reader that answers from a snapshot plus a few new entries only appends events and looks roots up,
# so a decoded state holds them as the chunks the snapshot stored (one chunk per snapshot that added to them):
# events are decoded when first read, roots are found by binary search in their chunk's sorted keys. Both behave
# as the list and the dict they stand for, for everything the engine and the faces do with them.

#: Chunks kept before a snapshot merges them into one.
MAX_CHUNKS = 8
_EVENT_FIELDS = _FIELDS[Event]


def _loads(chunk: bytes, what: str) -> Any:
    try:
        return marshal.loads(chunk)
    except (ValueError, EOFError, TypeError):
        raise MalformedInput(f"state snapshot: a chunk of {what} is malformed") from None


class _Lazy(ABC):
    """What the lazy parts of a decoded state share: equality and text are those of the whole, built once
    (``_all``)."""

    __slots__ = ()

    @abstractmethod
    def _all(self) -> Any:
        """The whole value, built once."""

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Lazy):
            other = other._all()
        return bool(self._all() == other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._all())


class LazyEvents(_Lazy):
    """``State.timeline`` of a state decoded from a snapshot: appends need not read the stored events; any read
    loads (and so checks) and decodes them once (then it is an ordinary list inside). Stored events that fail their
    check or do not decode are asked of ``recover`` (see :func:`decode`), if given."""

    __slots__ = ("_chunks", "_items", "_new", "_recover")

    def __init__(self, chunks: list[Callable[[], bytes]],
                 recover: Callable[[Exception], list[Event]] | None = None) -> None:
        self._chunks = chunks
        self._items: list[Event] | None = None
        self._new: list[Event] = []
        self._recover = recover

    @staticmethod
    def chunks_of(events: Any) -> list[bytes]:
        """The chunks a snapshot stores for ``events`` (a list of events or a ``LazyEvents``)."""
        if isinstance(events, LazyEvents) and events._items is None and len(events._chunks) < MAX_CHUNKS:
            try:
                stored = [load() for load in events._chunks]
            except StaleCache:
                if events._recover is None:
                    raise
            else:
                return stored + ([LazyEvents._pack(events._new)] if events._new else [])
        return [LazyEvents._pack(list(events))]  # (a stored chunk that fails its check: the events recovered)

    @staticmethod
    def _pack(events: list[Event]) -> bytes:
        rows = []
        for e in events:
            if type(e) is not Event:
                raise MalformedInput(f"state snapshot: the timeline holds a {type(e).__name__}")
            rows.append(tuple(vars(e).values()))
        return marshal.dumps(rows, MARSHAL_VERSION)

    def _all(self) -> list[Event]:
        if self._items is None:
            try:
                items = self._stored()
            except (StaleCache, MalformedInput) as exc:
                if self._recover is None:
                    raise
                items = list(self._recover(exc))
                if not all(type(e) is Event for e in items):
                    raise MalformedInput("state snapshot: the recovered timeline holds what is not an event") from exc
            items.extend(self._new)
            self._items, self._chunks, self._new, self._recover = items, [], [], None
        return self._items

    def _stored(self) -> list[Event]:
        new = object.__new__
        items: list[Event] = []
        for load in self._chunks:
            for row in _loads(load(), "the timeline"):
                if type(row) is not tuple or len(row) != len(_EVENT_FIELDS):
                    raise MalformedInput("state snapshot: a timeline event is malformed")
                e = new(Event)
                e.__dict__ = dict(zip(_EVENT_FIELDS, row))
                items.append(e)
        return items

    def append(self, event: Event) -> None:
        (self._new if self._items is None else self._items).append(event)

    def extend(self, events: Any) -> None:
        for e in events:
            self.append(e)

    def __len__(self) -> int:
        return len(self._all())

    def __bool__(self) -> bool:
        return bool(self._chunks) or bool(self._new) or bool(self._items)

    def __iter__(self) -> Any:
        return iter(self._all())

    def __reversed__(self) -> Any:
        return reversed(self._all())

    def __getitem__(self, index: Any) -> Any:
        return self._all()[index]

    def __contains__(self, item: object) -> bool:
        return item in self._all()


class _LazyMapping(_Lazy):
    """What the lazy mappings share: anything beyond a lookup builds the whole dict once (``_all``)."""

    __slots__ = ()

    @abstractmethod
    def _all(self) -> dict[str, Any]:
        """The whole mapping, built once."""

    def __iter__(self) -> Any:
        return iter(self._all())

    def keys(self) -> Any:
        return self._all().keys()

    def values(self) -> Any:
        return self._all().values()

    def items(self) -> Any:
        return self._all().items()


class _RootChunk:
    """One chunk of transcript roots: keys sorted, of one width, in one bytes string (lowercase hex keys as their
    bytes, others as UTF-8); values decoded when one is found (run keys once per chunk, entry indexes as an
    array)."""

    __slots__ = ("count", "hexed", "indexes", "keys", "runs", "values_blob", "width")

    def __init__(self, blob: bytes) -> None:
        parts = _loads(blob, "the transcript roots")
        if type(parts) is not tuple or len(parts) != 4 or type(parts[0]) is not int or type(parts[1]) is not bool \
                or type(parts[2]) is not bytes or type(parts[3]) is not bytes or parts[0] <= 0 \
                or len(parts[2]) % parts[0]:
            raise MalformedInput("state snapshot: a chunk of transcript roots is malformed")
        self.width, self.hexed, self.keys, self.values_blob = parts
        self.count = len(self.keys) // self.width
        self.runs: list[str] | None = None
        self.indexes: Any = None

    def blob(self) -> bytes:
        return marshal.dumps((self.width, self.hexed, self.keys, self.values_blob), MARSHAL_VERSION)

    def _key(self, key: str) -> bytes | None:
        if self.hexed:
            try:
                k = bytes.fromhex(key)
            except ValueError:
                return None
            return k if k.hex() == key else None  # only the lowercase spelling is this key
        try:
            return key.encode("utf-8")
        except UnicodeEncodeError:
            return None

    def find(self, key: str) -> tuple[str, int] | None:
        k = self._key(key)
        width, keys = self.width, self.keys
        if k is None or len(k) != width:
            return None
        lo, hi = 0, self.count
        while lo < hi:
            mid = (lo + hi) // 2
            if keys[mid * width:(mid + 1) * width] < k:
                lo = mid + 1
            else:
                hi = mid
        if lo == self.count or keys[lo * width:(lo + 1) * width] != k:
            return None
        return self.value(lo)

    def value(self, position: int) -> tuple[str, int]:
        if self.runs is None:
            runs, which, indexes = _loads(self.values_blob, "the transcript roots")
            self.runs, self.indexes = runs, (array("I", which), array("q", indexes))
            if len(self.indexes[0]) != self.count or len(self.indexes[1]) != self.count:
                raise MalformedInput("state snapshot: a chunk of transcript roots is malformed")
        which, indexes = self.indexes
        return (self.runs[which[position]], indexes[position])

    def items(self) -> Any:
        for i in range(self.count):
            k = self.keys[i * self.width:(i + 1) * self.width]
            yield (k.hex() if self.hexed else k.decode("utf-8")), self.value(i)

    @staticmethod
    def pack(roots: dict[str, tuple[str, int]]) -> list[bytes]:
        """Chunks for ``roots``: one per key form and width (lowercase hex keys as bytes, other keys as UTF-8),
        sorted."""
        groups: dict[tuple[bool, int], list[tuple[bytes, tuple[str, int]]]] = {}
        for key, value in roots.items():
            if type(value) is not tuple or len(value) != 2 or type(value[0]) is not str or type(value[1]) is not int:
                raise MalformedInput("state snapshot: a transcript root's value is not (run, entry)")
            try:
                k, hexed = bytes.fromhex(key), True
                if k.hex() != key:
                    raise ValueError
            except ValueError:
                try:
                    k, hexed = key.encode("utf-8"), False
                except UnicodeEncodeError:
                    raise MalformedInput("state snapshot: a transcript root is not UTF-8 text") from None
            groups.setdefault((hexed, len(k)), []).append((k, value))
        out = []
        for (hexed, width), rows in sorted(groups.items()):
            rows.sort()
            runs: dict[str, int] = {}
            which = array("I", (runs.setdefault(v[0], len(runs)) for _, v in rows))
            indexes = array("q", (v[1] for _, v in rows))
            values = marshal.dumps((list(runs), which.tobytes(), indexes.tobytes()), MARSHAL_VERSION)
            out.append(marshal.dumps((width, hexed, b"".join(k for k, _ in rows), values), MARSHAL_VERSION))
        return out


class LazyRoots(_LazyMapping):
    """``State.roots`` of a state decoded from a snapshot: lookups search the stored chunks without decoding them;
    new roots go to a dict on top; anything else (iterating, comparing) builds the whole dict once."""

    __slots__ = ("_chunks", "_dict", "_new")

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = [_RootChunk(c) for c in chunks]
        self._new: dict[str, tuple[str, int]] = {}
        self._dict: dict[str, tuple[str, int]] | None = None

    @staticmethod
    def chunks_of(roots: Any) -> list[bytes]:
        if isinstance(roots, LazyRoots) and roots._dict is None and len(roots._chunks) < MAX_CHUNKS:
            return [c.blob() for c in roots._chunks] + (_RootChunk.pack(roots._new) if roots._new else [])
        return _RootChunk.pack(dict(roots.items()))

    def _all(self) -> dict[str, tuple[str, int]]:
        if self._dict is None:
            out: dict[str, tuple[str, int]] = {}
            for chunk in self._chunks:
                out.update(chunk.items())
            out.update(self._new)
            self._dict, self._chunks, self._new = out, [], {}
        return self._dict

    def get(self, key: str, default: Any = None) -> Any:
        if self._dict is not None:
            return self._dict.get(key, default)
        if key in self._new:
            return self._new[key]
        for chunk in self._chunks:
            found = chunk.find(key)
            if found is not None:
                return found
        return default

    def setdefault(self, key: str, value: tuple[str, int]) -> tuple[str, int]:
        if self._dict is not None:
            return self._dict.setdefault(key, value)
        found = self.get(key)
        if found is None:
            self._new[key] = found = value
        return found  # type: ignore[no-any-return]

    def __getitem__(self, key: str) -> tuple[str, int]:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found  # type: ignore[no-any-return]

    def __setitem__(self, key: str, value: tuple[str, int]) -> None:
        self._all()[key] = value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __len__(self) -> int:
        return len(self._all())




_RUN_FIELDS = _FIELDS[Run]


class LazyRuns(_LazyMapping):
    """``State.runs`` of a state decoded from a snapshot: each run is kept as its own blob and decoded when first
    looked up; iterating (or comparing) decodes them all, in their order."""

    __slots__ = ("_decoded", "_full", "_raw")

    def __init__(self, raw: dict[str, bytes]) -> None:
        if not all(type(k) is str and type(v) is bytes for k, v in raw.items()):
            raise MalformedInput("state snapshot: field 'runs' is malformed")
        self._raw = raw
        self._decoded: dict[str, Run] = {}  # looked up or added since, in the order they came
        self._full: dict[str, Run] | None = None

    @staticmethod
    def pack(runs: Any) -> dict[str, bytes]:
        """Each run (of a dict of runs or a ``LazyRuns``) as its own blob."""
        if isinstance(runs, LazyRuns) and runs._full is None:
            return {k: (LazyRuns._pack(runs._decoded[k]) if k in runs._decoded else runs._raw[k])
                    for k in runs._order()}
        return {k: LazyRuns._pack(r) for k, r in runs.items()}

    @staticmethod
    def _pack(run: Any) -> bytes:
        if type(run) is not Run or tuple(vars(run)) != _RUN_FIELDS:
            raise MalformedInput(f"state snapshot: the runs hold a {type(run).__name__} that is not a plain Run")
        return marshal.dumps(tuple(vars(run).values()), MARSHAL_VERSION)

    def _order(self) -> list[str]:
        return [*self._raw, *(k for k in self._decoded if k not in self._raw)]

    def _decode(self, key: str) -> Run:
        values = _loads(self._raw[key], "a run")
        if type(values) is not tuple or len(values) != len(_RUN_FIELDS):
            raise MalformedInput(f"state snapshot: run {key!r} is malformed")
        run = object.__new__(Run)
        run.__dict__ = dict(zip(_RUN_FIELDS, values))
        self._decoded[key] = run
        return run

    def _all(self) -> dict[str, Run]:
        if self._full is None:
            self._full = {k: self._decoded[k] if k in self._decoded else self._decode(k) for k in self._order()}
            self._raw, self._decoded = {}, {}
        return self._full

    def get(self, key: str, default: Any = None) -> Any:
        if self._full is not None:
            return self._full.get(key, default)
        run = self._decoded.get(key)
        if run is not None:
            return run
        return self._decode(key) if key in self._raw else default

    def __getitem__(self, key: str) -> Run:
        run = self.get(key)
        if run is None:
            raise KeyError(key)
        return run  # type: ignore[no-any-return]

    def __setitem__(self, key: str, run: Run) -> None:
        if self._full is not None:
            self._full[key] = run
        else:
            self._decoded[key] = run

    def __contains__(self, key: object) -> bool:
        if self._full is not None:
            return key in self._full
        return key in self._decoded or key in self._raw

    def setdefault(self, key: str, run: Run) -> Run:
        got = self.get(key)
        if got is None:
            self[key] = got = run
        return got  # type: ignore[no-any-return]

    def __len__(self) -> int:
        if self._full is not None:
            return len(self._full)
        return len(self._raw) + sum(1 for k in self._decoded if k not in self._raw)

    def __bool__(self) -> bool:
        return len(self) > 0



def _policy(digest: str, doc: bytes) -> Any:
    policy = policy_from_document(parse_json(doc, what="snapshot policy"))
    if policy.digest != digest:
        raise MalformedInput(f"state snapshot: the policy stored under {digest[:12]} has digest {policy.digest[:12]}")
    return policy


def python_tag() -> str:
    """The interpreter a snapshot body depends on (``marshal`` is read back only by the same major.minor)."""
    return f"{sys.implementation.name}-{sys.version_info.major}.{sys.version_info.minor}"


__all__ = ["FORMAT", "RECORDS", "SHAPES", "Encoded", "LazyEvents", "LazyRoots", "LazyRuns", "decode", "encode",
           "python_tag"]
