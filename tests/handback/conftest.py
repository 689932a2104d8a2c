"""Fixtures of the fetch tests (the servers themselves are in ``servers.py``)."""

from .servers import finished_batch, media_host, s3, sandbox_server

__all__ = ["finished_batch", "media_host", "s3", "sandbox_server"]
