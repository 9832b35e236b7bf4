"""Parallel replay: the stateless work on every entry in helper processes, the state in one sequential pass.

``replay_parallel(entries)`` gives exactly the state ``replay(entries)`` gives, for every
input, valid or garbage; it only moves work that depends on nothing but an entry's bytes
to helper processes:

1. A cheap sequential pre-scan collects *candidate* keys (fingerprint → key) from the
   payloads of genesis, admission and key-rotation statements, chunk by chunk ahead of
   the chunks sent to the helpers (a key can only be current for an entry if the
   statement naming it came earlier). Nothing is trusted here: a candidate only says
   which signatures are worth verifying ahead of time, and a key the pre-scan misses
   only costs speed (``admit`` then verifies the signature itself).
2. The helpers run :func:`_prepare_chunk` on chunks of entries: parse the envelope, verify the
   first signature of each candidate key ID with that key (Ed25519 over the DSSE PAE,
   :func:`~redline.crypto.dsse.verified_keyids`), and, when one verifies, parse and validate the
   in-toto statement and its predicate. Signature validity is a pure function of the envelope
   bytes and the key, and the statement checks are pure functions of the payload, so the results
   are the same wherever they are computed.
3. The sequential pass calls :func:`~redline.engine.replay.apply` with each entry's
   :class:`~redline.engine.replay.Prepared`; ``admit`` decides which key is current for which
   party, roles, sequence numbers and semantics exactly as without it, and skips only the
   Ed25519 verification of a key whose signature is already known to verify and the parsing
   that is already done. An entry the helpers could not prepare is admitted from scratch, and
   so are the first ``HEAD_ENTRIES`` entries, and more for as long as the helpers are starting
   up, by this process.

The helpers send back plain data only (key IDs, the key IDs whose signature verified, the
predicate's type and canonical bytes, or the payload where the statement did not parse), and this
process validates the predicate again from those bytes: as cheap as rebuilding a model from any
other plain form, and nothing but plain data travels. Requests and replies are length-prefixed
pickles read back without looking up any class.

The helpers are forked from this process when it runs a single thread (counted by the system,
so threads Python did not start count too): they start at once, with everything imported.
Otherwise they are fresh interpreters (``sys.executable -P -c``, importing
``redline.engine.parallel``): no ``fork`` of a multi-threaded caller, whose other threads may hold
locks the child would inherit taken, and no re-import of the caller's main module (as
``multiprocessing``'s ``spawn`` does). A helper works in one thread, one request at a time; this
process never blocks on writing a request (it waits in ``poll``, writing what the pipes take),
so neither side can wait on the other. Helpers live for one call; one that cannot start, dies or
answers out of form only costs speed (``admit`` does the work).

Recursion: how deeply nested a document Python can parse depends on the stack depth it is
parsed at, so the helpers parse under a fixed recursion budget and their results are used
only when the sequential pass has more headroom than that; otherwise it replays
sequentially, exactly as ``replay`` would at that depth. A statement a helper could not parse
is parsed by ``admit`` where ``open_predicate`` would parse it (the same depth as under ``replay``).
"""

from __future__ import annotations

import binascii
import gc
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from types import FrameType
from typing import IO, Any, BinaryIO, TypeVar

import pybase64

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]
try:
    import select
except ImportError:  # pragma: no cover - every supported system has it
    select = None  # type: ignore[assignment]

from redline.crypto.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope, verified_keyids
from redline.crypto.keys import VerifierKey
from redline.engine.replay import MAX_ENTRY_BYTES, Entry, Prepared, apply
from redline.engine.state import State
from redline.statements import PREDICATE_TYPES, Predicate, parse_payload_canonical

__all__ = ["candidate_keys", "prepare", "replay_parallel"]

#: Entries per request sent to a helper: large enough to amortise the IPC, small enough to balance.
DEFAULT_CHUNK = 256
#: Entries the calling process admits itself, from scratch, before it sends the helpers any work.
HEAD_ENTRIES = 1024
#: After those, it goes on admitting entries itself, this many at a time, until every helper has started
#: (a helper's interpreter takes about 0.3 s of CPU to import what it needs); tests turn this off to make
#: the helpers do the work even on short logs.
ADMIT_WHILE_STARTING = True
STARTING_STEP = 64
#: Chunks in flight per helper (bounds the memory held by results not yet applied).
IN_FLIGHT_PER_WORKER = 4
#: Below this many entries the helpers are not worth starting.
MIN_PARALLEL_ENTRIES = 2_000
#: Stack frames the helpers may use below ``_prepare_chunk`` when parsing (ordinary statements need a few dozen).
RECURSION_BUDGET = 200
#: Extra headroom the sequential pass must have beyond the helpers' budget to use their results.
RECURSION_MARGIN = 50
#: Most candidate keys sent to the helpers (a log naming more is pathological; the rest are verified inline).
MAX_CANDIDATES = 4096
#: Allocations between young-generation garbage collections in the sequential pass (Python's default is 700):
#: the replay allocates many short-lived objects while holding a large live heap (the log, the state).
GC_THRESHOLD0 = 100_000
#: Seconds a helper may take to exit once its input is closed, before it is killed.
EXIT_TIMEOUT_S = 10
#: Bytes each pipe to and from a helper holds, where the system lets it be set (Linux; the default is 64 KiB).
PIPE_BYTES = 1 << 20
#: Bytes read from a helper's pipe at a time.
READ_BYTES = 1 << 20
#: Fork the helpers from this process when it runs a single thread (they start at once, with everything they need
#: imported); otherwise, or where fork is missing, they are fresh interpreters (about 0.3 s of CPU each to start).
FORK_HELPERS = True
#: What a helper sends first, once it has started.
READY = "ready"
#: Largest reply a helper may send (a reply holds less than its request, and a request at most
#: ``chunk`` entries of ``MAX_ENTRY_BYTES``); a larger length is taken as a helper out of form.
MAX_REPLY_BYTES = 1 << 30

_KEY_FIELDS = {
    b"urn:redline:genesis:v1": "coordinator_key",
    b"urn:redline:admission:v1": "verifier_key",
    b"urn:redline:key-rotation:v1": "new_verifier_key",
}


# --- 1. candidate keys ------------------------------------------------------------------


def _b64_forms(marker: bytes) -> tuple[bytes, ...]:
    """The base64 text ``marker`` turns into, at each of its 3 possible alignments in the encoded bytes.

    Only the characters that depend on the marker's bytes alone are kept: well-formed base64
    of bytes holding the marker holds one of these.
    """
    forms = []
    for align in range(3):
        text = binascii.b2a_base64(b"\0" * align + marker, newline=False)
        forms.append(text[(0, 2, 3)[align]:(align + len(marker)) // 3 * 4])
    return tuple(forms)


#: Every predicate naming a key has a field ending in ``_key`` (``coordinator_key``, ``verifier_key``,
#: ``new_verifier_key``); in JSON a quote inside a string is escaped, so this is a field name.
_KEY_FIELD = b'_key":'
_KEY_FIELD_FORMS = _b64_forms(_KEY_FIELD)


def _payload_bytes(data: bytes) -> bytes | None:
    """The envelope's payload, decoded leniently, when it may name a key (a hint: the engine parses it strictly)."""
    if data.startswith(b'{"payload":"'):  # the canonical form: the payload's base64 runs to the next quote
        end = data.find(b'"', 12)
        # Most statements name no key. Decoding (SIMD) and looking for the field in the JSON costs less than
        # looking for its three base64 spellings in the encoded text.
        try:
            payload = pybase64.b64decode(data[12:end if end >= 0 else len(data)])
        except (binascii.Error, ValueError):
            return None
        return payload if _KEY_FIELD in payload else None
    start = data.find(b'"payload":"')
    if start >= 0:
        start += 11
        end = data.find(b'"', start)
        b64 = data[start:end] if end >= 0 else b""
        if not any(form in b64 for form in _KEY_FIELD_FORMS):
            return None
    else:  # not written the canonical way: parse it properly
        try:
            obj = json.loads(data)
            b64 = obj["payload"].encode("ascii")
        except Exception:
            return None
    try:
        return binascii.a2b_base64(b64)
    except (binascii.Error, ValueError):
        return None


def _keys_in(payload: bytes) -> Iterator[VerifierKey]:
    for marker, field in _KEY_FIELDS.items():
        if marker not in payload:
            continue
        try:
            pred = json.loads(payload)["predicate"]
            yield VerifierKey.from_string(pred[field])
        except Exception:
            continue


def candidate_keys(datas: Iterable[bytes]) -> dict[str, VerifierKey]:
    """Fingerprint → key for every key named by a genesis, admission or key-rotation payload (untrusted)."""
    out: dict[str, VerifierKey] = {}
    for data in datas:
        if len(data) > MAX_ENTRY_BYTES:
            continue
        payload = _payload_bytes(data)
        if payload is None:
            continue
        for key in _keys_in(payload):
            out.setdefault(key.fingerprint, key)
    return out


# --- 2. the stateless work ----------------------------------------------------------


def prepare(data: bytes, candidates: Mapping[str, VerifierKey]) -> Prepared | None:
    """Everything about ``data`` that depends on nothing else, or None where ``admit`` must start from scratch.

    The signature verified for a candidate key ID is the envelope's first with that key ID: the one
    ``Envelope.verify`` checks for that key. The statement is parsed only when a signature verifies
    (otherwise ``admit`` fails at the signature, or has to verify itself); where it does not parse,
    the payload is kept for ``admit`` to parse again and say why.
    """
    env = _open(data)
    if env is None:
        return None
    verified = verified_keyids(env, candidates)
    keyids = tuple(s.keyid for s in env.signatures)
    if not verified:
        return Prepared(keyids, frozenset(), None, env)
    parsed = _parse(env)
    if parsed is None:
        return Prepared(keyids, frozenset(verified), None, env, env.payload_type, env.payload)
    return Prepared(keyids, frozenset(verified), parsed[0], env)


def _open(data: bytes) -> Envelope | None:
    if len(data) > MAX_ENTRY_BYTES:
        return None
    try:
        return Envelope.from_json(data)
    except Exception:
        return None


def _parse(env: Envelope) -> tuple[Predicate, bytes] | None:
    """``open_predicate`` after the signature verified, with the predicate's canonical bytes (None: it fails)."""
    try:
        if env.payload_type != IN_TOTO_PAYLOAD_TYPE:
            return None
        return parse_payload_canonical(env.payload)
    except Exception:
        return None  # admit repeats the checks and raises exactly what replay would


#: What a helper sends back for one entry: None (``admit`` starts from scratch), or the signatures' key IDs and
#: those whose signature verified, then, when one did, either the predicate's type and canonical bytes (``True``)
#: or the payload type and payload for ``admit`` to parse (``False``: the statement did not parse here).
_Item = tuple[tuple[str, ...], tuple[str, ...], str | None, bytes | None, bool] | None


def _prepare_chunk(datas: Sequence[bytes], keys: Mapping[str, VerifierKey]) -> list[_Item]:
    """A helper's work on one request: what ``prepare`` finds for each entry, under the recursion budget.

    The work goes in passes over the chunk (envelopes, then signatures, then statements): the same
    results as entry by entry, with each pass's code and data staying warm in the caches.
    """
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(_depth() + RECURSION_BUDGET)
    try:
        envs = [_guarded(_open, d) for d in datas]
        checks = [_guarded(verified_keyids, env, keys) if env is not None else None for env in envs]
        out: list[_Item] = []
        for env, verified in zip(envs, checks):
            if env is None or verified is None:
                out.append(None)
                continue
            sigs = env.signatures
            keyids = (sigs[0].keyid,) if len(sigs) == 1 else tuple(s.keyid for s in sigs)
            if not verified:
                out.append((keyids, (), None, None, False))
                continue
            parsed = _guarded(_parse, env)
            if parsed is None:
                out.append((keyids, tuple(verified), env.payload_type, env.payload, False))
            else:
                out.append((keyids, tuple(verified), parsed[0].PREDICATE_TYPE, parsed[1], True))
        return out
    finally:
        sys.setrecursionlimit(old)


_R = TypeVar("_R")


def _guarded(fn: Callable[..., _R], *args: Any) -> _R | None:
    try:
        return fn(*args)
    except RecursionError:
        return None


def _prepared(item: _Item) -> Prepared | None:
    """The ``Prepared`` a helper's result stands for: a parsed predicate validated again from its canonical bytes."""
    if item is None:
        return None
    keyids, verified, ptype, raw, parsed = item
    if not parsed or ptype is None or raw is None:
        return Prepared(keyids, frozenset(verified), None, None, ptype, raw)
    try:
        predicate = PREDICATE_TYPES[ptype].__pydantic_validator__.validate_json(raw)
    except Exception:  # cannot happen (the helper validated these bytes): admit does the work
        return Prepared(keyids, frozenset(verified))
    return Prepared(keyids, frozenset(verified), predicate)


def _depth() -> int:
    frame: FrameType | None = sys._getframe(1)
    n = 0
    while frame is not None:
        frame, n = frame.f_back, n + 1
    return n


# --- the helper processes -------------------------------------------------------------


class _PlainUnpickler(pickle.Unpickler):
    """Reads plain data only (None, bool, int, float, str, bytes, tuple, list, dict): no class is looked up."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"only plain data crosses between the processes, not {module}.{name}")


def _frame(value: Any) -> bytes:
    """Plain data as one frame: its length (8 bytes, little-endian), then its pickle."""
    body = pickle.dumps(value, protocol=5)
    return len(body).to_bytes(8, "little") + body


def _write_frame(out: BinaryIO, value: Any) -> None:
    """Write one frame (see :func:`_frame`) and flush it."""
    out.write(_frame(value))
    out.flush()


def _load_plain(body: bytes | bytearray | memoryview) -> Any:
    """The plain data a frame's body holds (``UnpicklingError`` for anything that would look up a class)."""
    return _PlainUnpickler(io.BytesIO(body)).load()


def _read_frame(inp: BinaryIO) -> Any:
    """The plain data of the next frame; EOFError at the end of the stream."""
    head = inp.read(8)
    if len(head) < 8:
        raise EOFError("stream ended")
    size = int.from_bytes(head, "little")
    body = inp.read(size)
    if len(body) < size:
        raise EOFError("stream ended inside a frame")
    return _load_plain(body)


def _serve(inp: BinaryIO | None = None, out: BinaryIO | None = None) -> None:
    """A helper process: requests ``(new candidate key strings, entry bytes)`` in, :func:`_prepare_chunk` out.

    One request at a time, in one thread: read it, work, write the reply. (A reading and a writing thread
    beside the working one cost about a fifth of the helper's time in handing the GIL around: libsodium's
    verification releases it on every signature.) It cannot deadlock with the calling process, which never
    blocks on writing a request (:class:`_Helpers`). The end of the input, or a request that is not plain
    data, ends it; so does the reading end going away.
    """
    inp = sys.stdin.buffer if inp is None else inp
    out = sys.stdout.buffer if out is None else out
    gc.freeze()  # the imported modules are permanent: collections need not scan them again and again
    keys: dict[str, VerifierKey] = {}
    try:
        _write_frame(out, READY)  # started: everything it needs is imported
    except OSError:
        return
    while True:
        try:
            new_keys, datas = _read_frame(inp)
        except Exception:  # the end of the input, or a request out of form
            return
        for text in new_keys:
            try:
                key = VerifierKey.from_string(text)
            except Exception:
                continue
            keys[key.fingerprint] = key
        try:
            _write_frame(out, _prepare_chunk(datas, keys))
        except OSError:  # the other end has gone
            return


class _Helpers:
    """The helper processes: requests sent round-robin, replies read back in the order sent.

    Writing a request never blocks: what a helper's pipe does not take at once waits in its outbox and
    goes out whenever this process waits for a reply (``poll``), so a helper blocked on writing its
    reply and this process blocked on writing a request can never wait on each other, whatever the pipes
    hold. A helper that cannot be started, dies, or answers out of form makes every reply from then on None
    (``admit`` then does the work): no outcome depends on the helpers.
    """

    def __init__(self, n: int) -> None:
        self.procs: list[subprocess.Popen[bytes] | _Forked] = []
        self.keys_sent: list[int] = []
        self.outbox: list[deque[memoryview]] = []
        self.inbox: list[bytearray] = []
        self.started: list[bool] = []
        self.turn = 0
        self.broken = select is None
        if self.broken:
            return
        fork = FORK_HELPERS and _single_threaded()
        # the helpers import this very redline (its root first on their path), never another one found first in
        # a directory on this process's path (e.g. the working directory of a ``python -m redline`` caller)
        path = [str(Path(__file__).resolve().parents[2]), *(p for p in sys.path if p)]
        boot = f"import sys; sys.path[:] = {path!r}; from redline.engine.parallel import _serve; _serve()"
        try:
            for _ in range(n):
                proc: subprocess.Popen[bytes] | _Forked | None = _fork(self.procs) if fork else None
                if proc is None:
                    # -P: import the installed redline, never one planted in the working directory (``-c``
                    # would put it first on the path)
                    proc = subprocess.Popen([sys.executable, "-P", "-c", boot], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, bufsize=0)
                self.procs.append(proc)
                self.keys_sent.append(0)
                self.outbox.append(deque())
                self.inbox.append(bytearray())
                self.started.append(False)
                for stream in (proc.stdin, proc.stdout):
                    _widen(stream)
                os.set_blocking(_pipe(proc.stdin).fileno(), False)
        except (OSError, ValueError, subprocess.SubprocessError):
            self.broken = True

    def ready(self, wait: bool = False) -> bool:
        """Whether every helper has said it started (or they are broken: then there is nothing to wait for)."""
        try:
            for i, started in enumerate(self.started):
                if not started and not self.broken:
                    body = self._receive(i, None if wait else 0.0)
                    if body is None:
                        return False
                    if _load_plain(body) != READY:
                        raise OSError("a helper started out of form")
                    self.started[i] = True
        except Exception:
            self.broken = True
        return True

    def submit(self, datas: list[bytes], keys: Sequence[str]) -> int | None:
        """Send a request; the helper's number, to read the reply with (None once broken)."""
        if self.broken or not self.ready(wait=True):
            return None
        i = self.turn
        self.turn = (i + 1) % len(self.procs)
        try:
            self.outbox[i].append(memoryview(_frame((list(keys[self.keys_sent[i]:]), datas))))
            self._send(i)
        except Exception:
            self.broken = True
            return None
        self.keys_sent[i] = len(keys)
        return i

    def _send(self, i: int) -> None:
        """Write what helper ``i``'s pipe takes now, without waiting."""
        box, fd = self.outbox[i], _pipe(self.procs[i].stdin).fileno()
        while box:
            try:
                n = os.write(fd, box[0])
            except BlockingIOError:
                return
            if n < len(box[0]):
                box[0] = box[0][n:]
                return
            box.popleft()

    def result(self, i: int | None, count: int) -> list[_Item] | None:
        """The reply to helper ``i``'s oldest request not yet answered (None: broken, or out of form)."""
        if i is None or self.broken:
            return None
        try:
            body = self._receive(i)
            assert body is not None
            items = _load_plain(body)
        except Exception:
            items = None
        if not isinstance(items, list) or len(items) != count:
            self.broken = True
            return None
        return items

    def _receive(self, i: int, timeout: float | None = None) -> bytearray | None:
        """The body of helper ``i``'s next frame, sending what the outboxes hold while it waits (None: not within
        ``timeout`` seconds; None waits as long as it takes)."""
        buf, fd = self.inbox[i], _pipe(self.procs[i].stdout).fileno()
        while True:
            if len(buf) >= 8:
                size = int.from_bytes(buf[:8], "little")
                if size > MAX_REPLY_BYTES:
                    raise OSError(f"a helper's reply of {size} bytes is out of form")
                if len(buf) >= 8 + size:
                    body = buf[8:8 + size]
                    del buf[:8 + size]
                    return body
            writing = {_pipe(self.procs[j].stdin).fileno(): j for j, box in enumerate(self.outbox) if box}
            ready, can_write = _wait(fd, list(writing), timeout)
            if not ready and not can_write:
                return None
            for w in can_write:
                self._send(writing[w])
            if ready:
                chunk = os.read(fd, READ_BYTES)
                if not chunk:
                    raise EOFError("a helper ended")
                buf += chunk

    def close(self) -> None:
        for p in self.procs:
            for stream in (p.stdin, p.stdout):  # the end of its input ends a helper (its replies go nowhere)
                try:
                    if stream is not None:
                        stream.close()
                except OSError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _wait(read: int, write: list[int], timeout: float | None) -> tuple[bool, list[int]]:
    """Wait until ``read`` can be read or some of ``write`` written (or ``timeout`` seconds pass): whether ``read``
    can, and which of ``write`` can. ``poll`` where the system has it (no limit on descriptor numbers, unlike
    ``select``'s 1,024)."""
    poll = getattr(select, "poll", None)
    if poll is None:  # pragma: no cover - every POSIX system redline runs on has poll
        readable, writable, _ = select.select([read], write, [], timeout)
        return bool(readable), writable
    waiter = poll()
    waiter.register(read, select.POLLIN)
    for fd in write:
        waiter.register(fd, select.POLLOUT)
    events = waiter.poll(None if timeout is None else timeout * 1000)
    ready = any(fd == read for fd, _ in events)  # readable, or at its end (POLLHUP): the read says which
    return ready, [fd for fd, _ in events if fd != read]


class _Forked:
    """A helper forked from this process: what :class:`_Helpers` uses of a ``Popen`` (its pipes, kill, wait)."""

    def __init__(self, pid: int, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self.pid, self.stdin, self.stdout = pid, stdin, stdout
        self.returncode: int | None = None

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, 0 if deadline is None else os.WNOHANG)
            except ChildProcessError:  # reaped already (SIGCHLD ignored): its status is gone, as Popen reads it
                self.returncode = 0
                break
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
            elif deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"helper {self.pid}", timeout or 0.0)
            else:
                time.sleep(0.005)
        return self.returncode


def _single_threaded() -> bool:
    """Whether this process runs one thread, counting threads Python did not start (Linux: its tasks).

    Only then is a fork safe: no other thread can be holding a lock the child would inherit taken.
    Where that cannot be told, the answer is no.
    """
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _fork(siblings: Sequence[subprocess.Popen[bytes] | _Forked]) -> _Forked | None:
    """A helper forked from this (single-threaded) process, everything it needs already imported; None where this
    system cannot fork (the caller starts a fresh interpreter instead)."""
    fork = getattr(os, "fork", None)
    if fork is None:
        return None
    requests_in, requests_out = os.pipe()
    replies_in, replies_out = os.pipe()
    try:
        pid = fork()
    except OSError:
        for fd in (requests_in, requests_out, replies_in, replies_out):
            os.close(fd)
        return None
    if pid == 0:  # the helper: serve, then leave without running anything of the parent's (atexit, buffers)
        code = 1
        try:
            os.close(requests_out)
            os.close(replies_in)
            for other in siblings:  # a sibling's input must end when the parent closes it, not stay open here
                for stream in (other.stdin, other.stdout):
                    if stream is not None:
                        os.close(stream.fileno())
            _serve(os.fdopen(requests_in, "rb"), os.fdopen(replies_out, "wb"))
            code = 0
        finally:
            os._exit(code)
    os.close(requests_in)
    os.close(replies_out)
    return _Forked(pid, os.fdopen(requests_out, "wb", buffering=0), os.fdopen(replies_in, "rb", buffering=0))


def _widen(stream: IO[bytes] | None) -> None:
    """Let a pipe hold a whole request or reply (Linux): fewer, larger writes and reads (only speed depends on
    it)."""
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None
    if stream is None or setsize is None:
        return
    try:
        fcntl.fcntl(stream.fileno(), setsize, PIPE_BYTES)
    except OSError:
        pass  # over the system's limit (/proc/sys/fs/pipe-max-size): the default size works, more slowly


def _pipe(stream: IO[bytes] | None) -> Any:
    if stream is None:
        raise OSError("no pipe")
    return stream


class _Reader:
    """Reads an entry iterator ahead; an exception it raises is kept until the entries before it are applied."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self._it = iter(entries)
        self.error: Exception | None = None

    def take(self, n: int) -> list[Entry]:
        out: list[Entry] = []
        if self.error is None:
            try:
                out.extend(islice(self._it, n))
            except Exception as exc:  # re-raised by reraise(), where replay would have raised it
                self.error = exc
        return out

    def rest(self) -> Iterator[Entry]:
        return self._it if self.error is None else iter(())

    def reraise(self) -> None:
        if self.error is not None:
            raise self.error


def _prepared_chunks(reader: _Reader, first: list[Entry], workers: int, chunk: int, known: Iterable[VerifierKey] = ()
                     ) -> Generator[tuple[list[Entry], list[Prepared | None]], None, None]:
    """Chunks of entries with their ``Prepared`` (None where a helper could not prepare one), in order.

    Candidate keys are collected chunk by chunk before the chunk is sent: a key can only be
    current for an entry if the statement that named it came earlier; ``known`` are keys the
    state replayed onto already holds (a state from a snapshot), candidates from the start.
    """
    helpers = _Helpers(workers)
    try:
        strings: list[str] = []
        fingerprints: set[str] = set()
        pending: deque[tuple[list[Entry], int | None]] = deque()
        held = deque(first)  # entries read already, not yet handed on

        def take(n: int) -> list[Entry]:
            batch = [held.popleft() for _ in range(min(n, len(held)))]
            return batch + reader.take(n - len(batch)) if len(batch) < n else batch

        def learn(batch: list[Entry]) -> None:
            for fp, key in candidate_keys(e.data for e in batch).items():
                if fp not in fingerprints and len(fingerprints) < MAX_CANDIDATES:
                    fingerprints.add(fp)
                    strings.append(key.to_string())

        def submit() -> None:
            batch = take(chunk)
            if not batch:
                return
            learn(batch)
            # an entry over the size limit is refused by its size alone: it need not travel
            datas = [e.data if len(e.data) <= MAX_ENTRY_BYTES else b"" for e in batch]
            pending.append((batch, helpers.submit(datas, strings)))

        for key in known:
            if key.fingerprint not in fingerprints and len(fingerprints) < MAX_CANDIDATES:
                fingerprints.add(key.fingerprint)
                strings.append(key.to_string())
        # The first entries are admitted here, from scratch, while the helpers start up (and more of them for as
        # long as the helpers are starting); the helpers' work begins after them.
        window = max(2, workers * IN_FLIGHT_PER_WORKER)
        lead = [held.popleft() for _ in range(min(HEAD_ENTRIES, len(held)))]
        learn(lead)
        started = helpers.ready()
        if started:  # (forked helpers are, about at once): they work on what follows while the lead is applied
            for _ in range(window):
                submit()
        while lead:
            yield lead, [None] * len(lead)
            lead = take(STARTING_STEP) if ADMIT_WHILE_STARTING and not started else []
            learn(lead)
            started = started or helpers.ready()
        if not pending:
            for _ in range(window):
                submit()
        while pending:
            batch, ticket = pending.popleft()
            items = helpers.result(ticket, len(batch))
            submit()
            yield batch, [None] * len(batch) if items is None else [_prepared(item) for item in items]
    finally:
        helpers.close()


# --- 3. the sequential pass ----------------------------------------------------------


def replay_parallel(entries: Iterable[Entry], state: State | None = None, *, workers: int = 2,
                    chunk: int = DEFAULT_CHUNK) -> State:
    """``replay(entries, state)`` with the stateless work on ``workers`` helper processes: the same state, faster.

    ``entries`` may be any iterable; it is read a few chunks ahead. A short log, one worker,
    or a call with little stack left replays sequentially. The helpers do not import the
    caller's main module, so no ``if __name__ == "__main__":`` guard is needed.
    """
    state = State() if state is None else state
    reader = _Reader(entries)
    first = reader.take(MIN_PARALLEL_ENTRIES)
    # The helpers' results stand only where this pass has more stack headroom than they had. apply runs
    # one frame below this one, as under replay, so the sequential fallback is replay itself.
    headroom = sys.getrecursionlimit() - _depth()
    if workers < 2 or len(first) < MIN_PARALLEL_ENTRIES or headroom < RECURSION_BUDGET + RECURSION_MARGIN:
        for e in first:
            apply(state, e)
        reader.reraise()
        for e in reader.rest():
            apply(state, e)
        return state
    chunks = _prepared_chunks(reader, first, workers, max(1, chunk), [p.key for p in state.parties.values()])
    try:
        with _fewer_collections():
            for batch, results in chunks:
                for e, pre in zip(batch, results):
                    apply(state, e, pre)
    finally:
        chunks.close()
    reader.reraise()
    return state


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Collect garbage less often for a while (restoring the thresholds after): no effect on the result."""
    old = gc.get_threshold()
    gc.set_threshold(max(old[0], GC_THRESHOLD0), old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)
