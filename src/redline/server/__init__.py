"""The public log service (``redline serve``): C2SP tlog-tiles reads, batched submissions, JSON views.

FastAPI and uvicorn come with the ``server`` extra; importing this package needs them.
"""

from __future__ import annotations

from redline.server.app import LogService, Publish, create_app, identity_publish

__all__ = ["LogService", "Publish", "create_app", "identity_publish"]
