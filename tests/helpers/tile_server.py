"""A static HTTP server on 127.0.0.1 for tests: serves one directory (switchable) of ``redline log tiles`` output."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class TileServer(ThreadingHTTPServer):
    """Serves ``root`` read-only; ``on_request(path)`` is told every path asked for (before it is served)."""

    daemon_threads = True

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.requests: list[str] = []
        self.on_request: Callable[[str], None] | None = None
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        """The base URL of the log served."""
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(SimpleHTTPRequestHandler):
    server: TileServer

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, directory=str(args[2].root), **kwargs)

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        if self.server.on_request is not None:
            self.server.on_request(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_tiles(root: Path) -> Iterator[TileServer]:
    """A running :class:`TileServer` over ``root``, shut down on exit."""
    server = TileServer(root)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
