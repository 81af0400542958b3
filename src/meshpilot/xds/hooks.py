"""The seam through which telemetry, convergence tracking and rollouts observe xDS streams.

Observers implement (part of) `XdsHooks`; subclass `NoopHooks` to override only what you
need. Hooks run on the server's event loop and must not block; an exception in a hook is
logged and never breaks a stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from meshpilot.xds.types import ProxyInfo


class XdsHooks(Protocol):
    def on_stream_open(self, proxy: ProxyInfo) -> None: ...

    def on_stream_close(self, proxy: ProxyInfo) -> None: ...

    def on_request(self, proxy: ProxyInfo, type_url: str, kind: str, nonce: str) -> None:
        """`kind`: initial, reconnect, request, ack, nack, stale or unknown_type."""

    def on_response(self, proxy: ProxyInfo, type_url: str, version: str, nonce: str,
                    resource_names: Sequence[str]) -> None: ...

    def on_ack(self, proxy: ProxyInfo, type_url: str, version: str) -> None: ...

    def on_nack(self, proxy: ProxyInfo, type_url: str, version: str, message: str) -> None:
        """`version` is the last version the proxy accepted; `message` is Envoy's error."""


class NoopHooks:
    """Does nothing; a base class for observers that care about a few events."""

    def on_stream_open(self, proxy: ProxyInfo) -> None:
        pass

    def on_stream_close(self, proxy: ProxyInfo) -> None:
        pass

    def on_request(self, proxy: ProxyInfo, type_url: str, kind: str, nonce: str) -> None:
        pass

    def on_response(self, proxy: ProxyInfo, type_url: str, version: str, nonce: str,
                    resource_names: Sequence[str]) -> None:
        pass

    def on_ack(self, proxy: ProxyInfo, type_url: str, version: str) -> None:
        pass

    def on_nack(self, proxy: ProxyInfo, type_url: str, version: str, message: str) -> None:
        pass
