"""The witness's HTTP face: ``POST <prefix>/add-checkpoint`` (c2sp.org/tlog-witness) over FastAPI.

Needs the ``server`` extra. The protocol logic is ``redline.witness.core.Witness``;
this module reads the body (at most ``MAX_REQUEST_BYTES``, else 413), runs the
witness in a worker thread and writes its answer: 200 ``text/plain`` cosignature
line(s), or the refusal's status with a one-line reason (409: the witness's size
and ``Content-Type: text/x.tlog.size``).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from redline.errors import WitnessRefused
from redline.log.witness import MAX_REQUEST_BYTES, SIZE_CONTENT_TYPE
from redline.witness.core import Witness


def create_app(witness: Witness, *, prefix: str = "", max_body: int = MAX_REQUEST_BYTES) -> FastAPI:
    """A FastAPI app serving ``witness`` at ``<prefix>/add-checkpoint`` (prefix like ``/witness`` or empty)."""
    prefix = prefix.rstrip("/")
    if prefix and not prefix.startswith("/"):
        raise ValueError(f"prefix {prefix!r} must start with '/'")
    app = FastAPI(title="redline witness", description="A C2SP tlog-witness cosigning redline checkpoints.",
                  docs_url=None, redoc_url=None, openapi_url=None)

    @app.post(f"{prefix}/add-checkpoint")
    async def add_checkpoint(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_body):
            return PlainTextResponse(f"request body over {max_body} bytes\n", status_code=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                return PlainTextResponse(f"request body over {max_body} bytes\n", status_code=413)
        try:
            line = await run_in_threadpool(witness.add_checkpoint, bytes(body))
        except WitnessRefused as exc:
            if exc.status == 409 and exc.size is not None:
                return Response(f"{exc.size}\n".encode(), status_code=409,
                                headers={"content-type": SIZE_CONTENT_TYPE})
            return PlainTextResponse(f"{exc}\n", status_code=exc.status or 500)
        return PlainTextResponse(line.decode())

    return app


__all__ = ["create_app"]
