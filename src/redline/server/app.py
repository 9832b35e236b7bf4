"""The public log service: C2SP tlog-tiles reads, batched submissions with receipts, and JSON views of the state.

``create_app(registry)`` serves one :class:`~redline.registry.Registry` (and its log):

- ``GET /checkpoint``, ``GET /tile/<L>/<N>[.p/<W>]``, ``GET /tile/entries/<N>[.p/<W>]`` (c2sp.org/tlog-tiles).
  A full tile is served once the log covers it (``Cache-Control: public, max-age=31536000, immutable``); a
  partial tile ``.p/W`` is served iff some size the log signed a checkpoint for makes that tile exactly
  ``W`` wide (short cache); anything else is 404. Tiles never change, so the service keeps the ones it
  has served in a bounded in-memory cache.
- ``POST /submit``: one signed DSSE envelope (JSON, at most ``MAX_ENTRY_BYTES``). Submissions queue (bounded:
  429 with ``Retry-After`` when full) for one worker thread, which takes all that arrive within a short
  window (``batch_ms``) and integrates them with :meth:`Registry.submit_many`: each admitted in order
  against the state, the admitted ones appended in ONE transaction under ONE checkpoint. Once the batch
  is durable and published, each submitter gets its C2SP tlog-proof receipt (``text/plain``) with the
  entry's index in ``Redline-Index``, its integration time in ``Redline-Time-Ms`` and ``Location:
  /api/entries/<index>``; a refused one gets a JSON problem (RFC 9457) naming the error class:

  ======================================================================  ======
  ``MalformedInput`` (unparseable envelope, statement or key)             400
  ``BadSignature``, ``UnknownKey``, ``NotAuthorized``, ``UnknownParty``,  403
  ``RevokedKey`` (not signed by an admitted party allowed to say it)
  ``SequenceError`` (replays or skips the party's sequence number)        409
  ``InputTooLarge`` / ``EntryTooLarge``, or a body over the limit         413
  ``InvalidStatement``, ``InvalidPolicy``, ``UntrustedCode``              422
  queue full                                                              429
  ``LogError`` (the append failed; nothing was written)                   503
  ======================================================================  ======

- ``GET /api/state``, ``/api/parties``, ``/api/runs``, ``/api/reviews``, ``/api/violations`` (paginated with
  ``offset``/``limit``) and ``/api/entries/{index}`` (the entry, its envelope and its receipt).

Publishing: after each append the worker calls ``publish(old_size, new_checkpoint, consistency_proof)``
(default :func:`identity_publish`); what it returns (e.g. the checkpoint with witness cosignatures) must
still be the log's signed checkpoint of that size and is what ``/checkpoint`` and the receipts carry. The
published checkpoints are kept in memory only (the last ``PUBLISHED_KEPT``); after a restart the worker
publishes the latest stored checkpoint again (``old_size`` = its size, empty proof) and serves the
log-signed one until that returns. A publish that raises or returns something else is logged and publishes
nothing: ``/checkpoint`` keeps the last published checkpoint, the batch's receipts carry the log-signed one,
and the next batch is published from the last published size. The entries are durable either way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Query, Request
from fastapi import Path as ApiPath
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from redline.crypto.canonical import parse_json
from redline.crypto.encoding import b64encode
from redline.engine.replay import MAX_ENTRY_BYTES
from redline.engine.view import release_status, state_json, with_times
from redline.errors import (
    BadSignature,
    IndexOutOfRange,
    InputTooLarge,
    InvalidPolicy,
    InvalidStatement,
    KeyMaterialError,
    LogError,
    MalformedInput,
    NotAuthorized,
    QueueFull,
    RedlineError,
    SequenceError,
    UntrustedCode,
)
from redline.log.checkpoint import open_checkpoint
from redline.log.tiles import parse_tile_path, tile_bytes, tile_implied
from redline.registry import Registry, Submitted
from redline.times import iso_millis

log = logging.getLogger("redline.server")

#: publish(old_size, new_checkpoint, consistency_proof) -> the checkpoint to serve (e.g. cosigned).
Publish = Callable[[int, bytes, list[bytes]], bytes]

#: Largest request body accepted anywhere: one log entry (a signed envelope).
MAX_BODY_BYTES = MAX_ENTRY_BYTES
FULL_TILE_CACHE = "public, max-age=31536000, immutable"
PARTIAL_TILE_CACHE = "public, max-age=60"
CHECKPOINT_CACHE = "no-cache"
TILE_TYPE = "application/octet-stream"
TEXT_TYPE = "text/plain; charset=utf-8"
PROBLEM_TYPE = "application/problem+json"
#: Most entries one page of a list endpoint holds.
MAX_PAGE = 500
#: Published checkpoints kept in memory.
PUBLISHED_KEPT = 1024
#: Seconds a client is told to wait after a 429.
RETRY_AFTER_S = 1


def identity_publish(old_size: int, new_checkpoint: bytes, proof: list[bytes]) -> bytes:
    """The default publication step: serve the log-signed checkpoint as it is."""
    return new_checkpoint


def status_for(exc: BaseException) -> int:
    """The HTTP status a refused submission gets (see the module's table)."""
    if isinstance(exc, InputTooLarge):
        return 413
    if isinstance(exc, SequenceError):
        return 409
    if isinstance(exc, (InvalidStatement, InvalidPolicy, UntrustedCode)):
        return 422
    if isinstance(exc, (BadSignature, NotAuthorized)):
        return 403
    if isinstance(exc, (MalformedInput, KeyMaterialError)):
        return 400
    if isinstance(exc, IndexOutOfRange):
        return 404
    return 503


_TITLES = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict", 413: "Content Too Large",
           422: "Unprocessable Content", 429: "Too Many Requests", 503: "Service Unavailable"}


def problem(status: int, error: str, detail: str, headers: dict[str, str] | None = None, *,
            fields: dict[str, Any] | None = None) -> JSONResponse:
    """An RFC 9457 problem document naming the error class and why; ``fields`` (the error's structured fields,
    ``RedlineError.fields()``) become extension members, except any that a standard member already names."""
    body: dict[str, Any] = {"type": "about:blank", "title": _TITLES.get(status, "Error"), "status": status,
                            "error": error, "detail": detail}
    for name, value in (fields or {}).items():
        body.setdefault(name, value)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_TYPE, headers=headers)


class Problem(BaseModel):
    """A refusal (RFC 9457 problem details): ``error`` is the redline error class, ``detail`` the reason; the
    error's structured fields, where it has any (``field``, ``key_name``, ``expected``, ...), are extension
    members beside them."""

    type: str = "about:blank"
    title: str
    status: int
    error: str
    detail: str


class Page(BaseModel):
    """One page of a list: ``items[k]`` is element ``offset + k`` of ``total``."""

    total: int
    offset: int
    limit: int
    items: list[dict[str, Any]]


class EntryView(BaseModel):
    """One log entry with its receipt against the latest published checkpoint."""

    index: int
    time_ms: int = Field(description="Integration time, ms since the Unix epoch (bound into the leaf).")
    time: str = Field(description="The integration time in RFC 3339 (UTC).")
    leaf: str = Field(description="Base64 of the leaf: 8-byte big-endian time || entry.")
    envelope: dict[str, Any] | None = Field(description="The entry as JSON (a DSSE envelope), null if not JSON.")
    statement: dict[str, Any] | None = Field(description="The envelope's payload decoded, null if not JSON.")
    tree_size: int = Field(description="The size of the checkpoint the proof is against.")
    inclusion_proof: list[str] = Field(description="The audit path, base64 hashes.")
    receipt: str = Field(description="The C2SP tlog-proof receipt (text).")


def _problem_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_TYPE: {"schema": Problem.model_json_schema()}}}


_TOO_LARGE = {413: _problem_response(f"Request body over {MAX_BODY_BYTES} bytes.")}


class _BodyTooLarge(Exception):
    """A request body went over the limit while being read."""


class LogService:
    """The state the app serves: the registry, the checkpointed sizes, published checkpoints, a tile cache and
    the batching worker. One ``RLock`` guards the log and the state (the worker holds it while appending)."""

    def __init__(self, registry: Registry, *, publish: Publish = identity_publish, batch_ms: float = 5.0,
                 queue_size: int = 1024, max_batch: int = 1000, tile_cache_bytes: int = 64 << 20) -> None:
        if queue_size < 1 or max_batch < 1 or batch_ms < 0:
            raise ValueError("queue_size and max_batch must be positive and batch_ms not negative")
        self.registry = registry
        self.log = registry.log
        self.publish = publish
        self.batch_s = batch_ms / 1000
        self.max_batch = max_batch
        self.lock = threading.RLock()
        self.sizes: list[int] = list(self.log.checkpoint_sizes())
        if not self.sizes or self.sizes[-1] != self.log.size:
            raise LogError(f"the log's latest checkpoint does not cover its {self.log.size} entries")
        latest = self.sizes[-1]
        self._published: OrderedDict[int, bytes] = OrderedDict({latest: self.log.checkpoint(latest)})
        self.published_size = latest
        self.appends = 0  #: batches appended since start
        self._queue: queue.Queue[tuple[bytes, concurrent.futures.Future[Any]]] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._tiles: OrderedDict[str, bytes] = OrderedDict()
        self._tiles_bytes = 0
        self._tiles_max = tile_cache_bytes
        self._tiles_lock = threading.Lock()

    # --- worker -------------------------------------------------------------

    def start(self) -> None:
        """Start the batching worker (once)."""
        with self._start_lock:
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="redline-batcher", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the worker after the batch in hand; submissions still queued are refused (503)."""
        with self._start_lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout)
        while True:
            try:
                _, fut = self._queue.get_nowait()
            except queue.Empty:
                break
            _resolve(fut, LogError("the server is shutting down; the statement was not logged"))

    def queued(self) -> int:
        """Submissions waiting for the worker."""
        return self._queue.qsize()

    def enqueue(self, envelope: bytes) -> concurrent.futures.Future[Any]:
        """Queue one envelope; its future gets a ``Submitted`` or the refusing ``RedlineError``."""
        self.start()
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            self._queue.put_nowait((envelope, fut))
        except queue.Full:
            raise QueueFull from None
        return fut

    def _run(self) -> None:
        self._publish_step(self.published_size, self.log.checkpoint(self.published_size), [])
        while not self._stop.is_set():
            try:
                batch = [self._queue.get(timeout=0.1)]
            except queue.Empty:
                continue
            deadline = time.monotonic() + self.batch_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except queue.Empty:
                    pass
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
            self._integrate(batch)

    def _integrate(self, batch: list[tuple[bytes, concurrent.futures.Future[Any]]]) -> None:
        results: list[Any]
        try:
            with self.lock:
                old = self.log.size
                results = list(self.registry.submit_many([e for e, _ in batch]))
                new = self.log.size
                if new != old:
                    ours = sum(1 for r in results if isinstance(r, Submitted))
                    if new - old != ours or (self.sizes and self.sizes[-1] != old):
                        # other server processes appended to the same store meanwhile: their checkpoints too
                        self.sizes = list(self.log.checkpoint_sizes())
                    elif not self.sizes or self.sizes[-1] != new:
                        self.sizes.append(new)
                    self.appends += 1
                    checkpoint = self.log.checkpoint(new)
                    # published from the last checkpoint the witnesses saw (earlier batches may have failed to)
                    since = self.published_size
                    proof = self.log.prove_consistency(since, new) if 0 < since < new else []
            if new != old:
                served = self._publish_step(since, checkpoint, proof)
                results = [dataclasses.replace(r, receipt=dataclasses.replace(r.receipt, checkpoint=served))
                           if isinstance(r, Submitted) and r.receipt.checkpoint == checkpoint else r for r in results]
        except Exception as exc:  # answer every submitter rather than leave them hanging
            log.exception("integrating a batch of %d failed", len(batch))
            results = [exc] * len(batch)
        for (_, fut), result in zip(batch, results):
            _resolve(fut, result)

    def _publish_step(self, old_size: int, checkpoint: bytes, proof: list[bytes]) -> bytes:
        """Run ``publish``; keep, serve and return what it gave if that is still the log's checkpoint.

        A publish that fails (e.g. the witnesses' quorum was not met) publishes nothing: ``/checkpoint`` keeps
        serving the last checkpoint that was published, the receipts of the batch carry the log-signed
        checkpoint (they still verify offline against the log's key), and the next batch is published from the
        last published size, with a consistency proof from there.
        """
        want, _ = open_checkpoint(checkpoint, self.log.verifier)
        try:
            out = self.publish(old_size, checkpoint, proof)
            got, _ = open_checkpoint(bytes(out), self.log.verifier)
            if (got.size, got.root) != (want.size, want.root):
                raise ValueError(f"publish returned the checkpoint of size {got.size}, not {want.size}")
            served = bytes(out)
        except Exception:
            log.exception("publishing the checkpoint of size %d failed; /checkpoint still serves size %d",
                          want.size, self.published_size)
            return checkpoint
        with self.lock:
            self._published[want.size] = served
            while len(self._published) > PUBLISHED_KEPT:
                self._published.popitem(last=False)
            self.published_size = max(self.published_size, want.size)
        return served

    # --- reads --------------------------------------------------------------

    def checkpoint(self) -> bytes:
        """The latest published checkpoint."""
        with self.lock:
            return self._published[self.published_size]

    def cached_tile(self, path: str) -> bytes | None:
        """A tile already served, from memory."""
        with self._tiles_lock:
            data = self._tiles.get(path)
            if data is not None:
                self._tiles.move_to_end(path)
            return data

    def read_tile(self, path: str) -> bytes | None:
        """The bytes at ``tile/<path>``, or None when no checkpointed size implies that tile."""
        try:
            tile = parse_tile_path("tile/" + path)
        except MalformedInput:
            return None
        data = self.cached_tile(path)
        if data is not None:
            return data
        with self.lock:
            if not tile_implied(tile, self.sizes):
                return None
            data = tile_bytes(tile, self.sizes[-1], self.log.store, self.log.store.read_leaves)
        if len(data) <= self._tiles_max // 16:
            with self._tiles_lock:
                if path not in self._tiles:
                    self._tiles[path] = data
                    self._tiles_bytes += len(data)
                while self._tiles_bytes > self._tiles_max:
                    self._tiles_bytes -= len(self._tiles.popitem(last=False)[1])
        return data

    def entry_view(self, index: int) -> dict[str, Any] | None:
        """The ``EntryView`` of entry ``index``, None beyond the log."""
        with self.lock:
            if index >= self.log.size:
                return None
            size = self.published_size if index < self.published_size else self.log.size
            checkpoint = self._published.get(size) or self.log.checkpoint(size)
            receipt = dataclasses.replace(self.log.receipt(index, size), checkpoint=checkpoint)
            leaf = self.log.leaf(index)
        time_ms, entry = int.from_bytes(leaf[:8], "big"), leaf[8:]
        envelope = statement = None
        try:
            envelope = parse_json(entry, what="entry")
            if isinstance(envelope, dict) and isinstance(envelope.get("payload"), str):
                import base64

                statement = parse_json(base64.b64decode(envelope["payload"], validate=True), what="payload")
        except (RedlineError, ValueError):
            pass
        return {"index": index, "time_ms": time_ms, "time": iso_millis(time_ms), "leaf": b64encode(leaf),
                "envelope": envelope if isinstance(envelope, dict) else None,
                "statement": statement if isinstance(statement, dict) else None, "tree_size": size,
                "inclusion_proof": [b64encode(h) for h in receipt.proof], "receipt": receipt.encode().decode()}


def _resolve(fut: concurrent.futures.Future[Any], result: Any) -> None:
    if not fut.done():
        try:
            fut.set_result(result)
        except concurrent.futures.InvalidStateError:
            pass


def _page(items: list[dict[str, Any]], offset: int, limit: int) -> dict[str, Any]:
    return {"total": len(items), "offset": offset, "limit": limit, "items": items[offset : offset + limit]}


class BodyLimit:
    """ASGI middleware refusing a request body over ``limit`` bytes with 413: early by ``Content-Length``,
    else while it is read."""

    def __init__(self, app: Callable[..., Awaitable[None]], limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and (not value.isdigit() or len(value) > 18 or int(value) > self.limit):
                await problem(413, "InputTooLarge", f"request body is over {self.limit} bytes (Content-Length: "
                              f"{value[:20].decode('latin-1')})", {"Connection": "close"})(scope, receive, send)
                return
        seen = 0
        started = False

        async def limited() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge
            return message

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except _BodyTooLarge:
            if not started:
                await problem(413, "InputTooLarge", f"request body is over {self.limit} bytes",
                              {"Connection": "close"})(scope, receive, send)


class TileFastPath:
    """ASGI middleware answering ``GET /tile/...`` from the service's tile cache without routing; anything
    else (and every cache miss) goes on to the app."""

    def __init__(self, app: Callable[..., Awaitable[None]], service: LogService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        path = scope.get("path", "") if scope["type"] == "http" and scope.get("method") == "GET" else ""
        data = self.service.cached_tile(path[6:]) if path.startswith("/tile/") and len(path) <= 134 else None
        if data is None:
            await self.app(scope, receive, send)
            return
        cache = PARTIAL_TILE_CACHE if ".p/" in path else FULL_TILE_CACHE
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", TILE_TYPE.encode()), (b"content-length", str(len(data)).encode()),
            (b"cache-control", cache.encode())]})
        await send({"type": "http.response.body", "body": data})


_ENVELOPE_SCHEMA = {
    "type": "object",
    "description": "A DSSE envelope (in-toto Statement v1 payload, Ed25519 signatures), at most "
                   f"{MAX_BODY_BYTES} bytes.",
    "required": ["payload", "payloadType", "signatures"],
    "properties": {
        "payload": {"type": "string", "description": "base64 of the RFC 8785 canonical statement"},
        "payloadType": {"type": "string", "enum": ["application/vnd.in-toto+json"]},
        "signatures": {"type": "array", "items": {
            "type": "object", "required": ["keyid", "sig"],
            "properties": {"keyid": {"type": "string"}, "sig": {"type": "string"}}}},
    },
}


def create_app(registry: Registry, *, publish: Publish = identity_publish, batch_ms: float = 5.0,
               queue_size: int = 1024, max_batch: int = 1000, service: LogService | None = None) -> FastAPI:
    """The FastAPI app serving ``registry``'s log (see the module docstring); ``app.state.service`` is its
    :class:`LogService`, whose worker runs for the app's lifespan (or from the first submission)."""
    svc = service or LogService(registry, publish=publish, batch_ms=batch_ms, queue_size=queue_size,
                                max_batch=max_batch)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        svc.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(svc.stop)

    app = FastAPI(title="redline log", version="1", lifespan=lifespan,
                  description="A redline transparency log: C2SP tlog-tiles, submissions with C2SP tlog-proof "
                              "receipts, and the state replayed from the log. Refusals are RFC 9457 problems.")
    app.state.service = svc
    app.add_middleware(TileFastPath, service=svc)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)  # added last: runs first

    text = {"content": {TEXT_TYPE: {"schema": {"type": "string"}}}}

    @app.get("/checkpoint", response_class=Response, tags=["tlog-tiles"],
             responses={200: {"description": "The latest published signed checkpoint (C2SP tlog-checkpoint).",
                              **text}, **_TOO_LARGE})
    async def get_checkpoint() -> Response:
        return Response(svc.checkpoint(), media_type=TEXT_TYPE, headers={"Cache-Control": CHECKPOINT_CACHE})

    @app.get("/tile/{tile_path:path}", response_class=Response, tags=["tlog-tiles"],
             responses={200: {"description": "A hash tile (<L>/<N>[.p/<W>]) or entry bundle (entries/<N>[.p/<W>]).",
                              "content": {TILE_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
                        404: _problem_response("No tree size the log signed a checkpoint for implies this tile."),
                        **_TOO_LARGE})
    async def get_tile(tile_path: str = ApiPath(..., max_length=128, description="e.g. 0/x001/234.p/7")
                       ) -> Response:
        data = svc.cached_tile(tile_path) if len(tile_path) <= 128 else None
        if data is None and len(tile_path) <= 128:
            data = await anyio.to_thread.run_sync(svc.read_tile, tile_path)
        if data is None:
            return problem(404, "NotFound", f"no tile {tile_path!r} in this log")
        partial = ".p/" in tile_path
        return Response(data, media_type=TILE_TYPE,
                        headers={"Cache-Control": PARTIAL_TILE_CACHE if partial else FULL_TILE_CACHE})

    @app.post("/submit", response_class=Response, tags=["submission"],
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": _ENVELOPE_SCHEMA}}}},
              responses={200: {"description": "Logged durably: the C2SP tlog-proof receipt against the published "
                                              "checkpoint of the batch.", **text,
                               "headers": {"Redline-Index": {"schema": {"type": "integer"},
                                                             "description": "The entry's index."},
                                           "Redline-Time-Ms": {"schema": {"type": "integer"},
                                                               "description": "Its integration time (ms)."},
                                           "Location": {"schema": {"type": "string"},
                                                        "description": "/api/entries/<index>"}}},
                         400: _problem_response("Malformed envelope, statement or key."),
                         403: _problem_response("Bad signature, unknown party, revoked key, or not authorised."),
                         409: _problem_response("Sequence number replays or skips the party's last one."),
                         413: _problem_response(f"Body over {MAX_BODY_BYTES} bytes."),
                         422: _problem_response("The statement is invalid (field, policy or pinned code)."),
                         429: {**_problem_response("The submission queue is full; retry later."),
                               "headers": {"Retry-After": {"schema": {"type": "integer"},
                                                           "description": "Seconds to wait."}}},
                         503: _problem_response("The log could not append (nothing was written) or is stopping.")})
    async def submit(request: Request) -> Response:
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    raise _BodyTooLarge
        except _BodyTooLarge:
            return problem(413, "InputTooLarge", f"request body is over {MAX_BODY_BYTES} bytes")
        try:
            fut = svc.enqueue(bytes(body))
        except QueueFull:
            return problem(429, "QueueFull", "too many submissions are waiting; retry later",
                           {"Retry-After": str(RETRY_AFTER_S)})
        result = await asyncio.wrap_future(fut)
        if isinstance(result, Submitted):
            return Response(result.receipt.encode(), media_type=TEXT_TYPE,
                            headers={"Redline-Index": str(result.index), "Redline-Time-Ms": str(result.time_ms),
                                     "Location": f"/api/entries/{result.index}"})
        if isinstance(result, RedlineError):
            return problem(status_for(result), type(result).__name__, str(result), fields=result.fields())
        return problem(503, type(result).__name__, "the log could not integrate the batch; nothing was written")

    page_args = {"offset": Query(0, ge=0, le=1 << 31, description="First item."),
                 "limit": Query(100, ge=1, le=MAX_PAGE, description=f"Items per page (at most {MAX_PAGE}).")}
    json_ok = {**_TOO_LARGE}

    @app.get("/api/state", tags=["state"], response_model=dict[str, Any], responses=json_ok)
    def api_state() -> JSONResponse:
        """The whole state replayed from the log (``redline.engine.view.state_json``)."""
        with svc.lock:
            return JSONResponse(state_json(svc.registry.state))

    @app.get("/api/parties", tags=["state"], response_model=Page, responses=json_ok)
    def api_parties(offset: int = page_args["offset"], limit: int = page_args["limit"]) -> JSONResponse:
        """Admitted parties, by name: role, key, key history, last sequence number."""
        with svc.lock:
            items = [with_times(p.to_dict()) for _, p in sorted(svc.registry.state.parties.items())]
        return JSONResponse(_page(items, offset, limit))

    @app.get("/api/runs", tags=["state"], response_model=Page, responses=json_ok)
    def api_runs(offset: int = page_args["offset"], limit: int = page_args["limit"]) -> JSONResponse:
        """Declared training runs with their compute, by key ``party/run_id``."""
        with svc.lock:
            runs = [{"key": k, **dataclasses.asdict(r), "compute": r.compute}
                    for k, r in sorted(svc.registry.state.runs.items())]
        items = [with_times(r) for r in runs]
        return JSONResponse(_page(items, offset, limit))

    @app.get("/api/reviews", tags=["state"], response_model=Page, responses=json_ok)
    def api_reviews(offset: int = page_args["offset"], limit: int = page_args["limit"]) -> JSONResponse:
        """Pre-release reviews: decision, findings, and whether the weights may be released now."""
        with svc.lock:
            items = release_status(svc.registry.state)
        return JSONResponse(_page(items, offset, limit))

    @app.get("/api/violations", tags=["state"], response_model=Page, responses=json_ok)
    def api_violations(offset: int = page_args["offset"], limit: int = page_args["limit"]) -> JSONResponse:
        """Violations the engine found, in log order."""
        with svc.lock:
            items = [with_times(dataclasses.asdict(v)) for v in svc.registry.state.violations]
        return JSONResponse(_page(items, offset, limit))

    @app.get("/api/entries/{index}", tags=["state"], response_model=EntryView,
             responses={404: _problem_response("No entry at this index."), **json_ok})
    def api_entry(index: int = ApiPath(..., ge=0, le=(1 << 63) - 1)) -> JSONResponse:
        """One entry: time, leaf, envelope and statement, and its receipt against the latest checkpoint."""
        view = svc.entry_view(index)
        if view is None:
            return problem(404, "IndexOutOfRange", f"no entry {index}: the log holds {svc.log.size}")
        return JSONResponse(view)

    from redline.server.dashboard import mount_dashboard  # the HTML pages (docs/guides/public.md, "Dashboard")

    mount_dashboard(app, svc)
    return app


__all__ = ["MAX_BODY_BYTES", "LogService", "Problem", "Publish", "QueueFull", "create_app", "identity_publish",
           "problem", "status_for"]
