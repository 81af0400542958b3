"""Errors raised by the resource store, mirroring Kubernetes API status codes.

Each error names the object and says what to do next, because these messages reach
users unchanged through the CLI and the HTTP API (404, 409, 409, 410).
"""

from __future__ import annotations

from meshpilot.api.resource import ResourceKey


class StoreError(Exception):
    """Base class of every store error; `key` is the object concerned, if any."""

    def __init__(self, message: str, *, key: ResourceKey | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key

    def __str__(self) -> str:
        return self.message


class NotFound(StoreError):
    """The object does not exist (HTTP 404)."""


class AlreadyExists(StoreError):
    """`create` of an object that already exists (HTTP 409 AlreadyExists)."""


class Conflict(StoreError):
    """A resourceVersion precondition failed: someone changed the object (HTTP 409)."""

    def __init__(
        self, message: str, *, key: ResourceKey | None = None, given: int = 0, current: int = 0
    ) -> None:
        super().__init__(message, key=key)
        self.given = given
        self.current = current


class Gone(StoreError):
    """Events after the requested resourceVersion were compacted away (HTTP 410).

    The client must list again and resume watching from the list's revision.
    """

    def __init__(self, message: str, *, requested: int, compacted: int) -> None:
        super().__init__(message)
        self.requested = requested
        self.compacted = compacted
