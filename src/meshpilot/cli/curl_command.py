"""`meshpilot curl`: the seed's `kubectl run test-client --image=curlimages/curl --rm -i
-n traffic-demo -- curl ...`, standalone: one request from inside the mesh.

Where the request goes, in order:

1. `-x http://127.0.0.1:PORT`: that explicit HTTP proxy (any sidecar's outbound port).
2. `--via NAME`: the outbound port of sidecar NAME in `-n NS` (a WorkloadEntry name, or a
   workload started with `meshpilot run NAME`).
3. A URL host that is an IP address (or `localhost`), or that `--resolve HOST:PORT:ADDR`
   maps: straight to that address, as curl would, e.g. an ingress gateway. A gateway
   binds Gateway port 443 elsewhere (`--port-map 443:8443`), so when a gateway registered
   at ADDR maps PORT, the connection goes to its bind port; TLS still uses the URL's
   host for SNI and verification.
4. Otherwise a mesh client in namespace NS: a running sidecar named `curl-client` (or
   labelled app=curl-client) is reused; if there is none, a short-lived client sidecar
   (Envoy only, not registered, workload `curl-client`) is started for this request
   and stopped after it. Measured on a busy 2-core machine: 0.88 s per command against
   0.40 s when a `curl-client` runs (most of that is Python starting); Envoy is ready
   with its config 0.08 s after start, and 0.35 s go to letting it flush its access log
   so the request is counted in source-side metrics. For many requests start one once:
   `meshpilot sidecar --name curl-client -n NS --labels app=curl-client --app-port P`.

Exit codes are curl's (7 cannot connect, 28 timeout, 22 HTTP error with `-f`, 60
certificate problem, 5 no proxy to go through...); an HTTP error status without `-f`
still exits 0, as in curl.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .. import __version__
from .curl_transfer import (
    COULDNT_CONNECT,
    COULDNT_RESOLVE_PROXY,
    FAILED_INIT,
    HTTP_RETURNED_ERROR,
    READ_ERROR,
    WRITE_ERROR,
    CurlError,
    Limits,
    Output,
    Request,
    Resolve,
    Route,
    Tls,
    Url,
    build_headers,
    is_ip,
    parse_resolve,
    parse_url,
    perform,
    resolved,
)
from .curl_writeout import Transfer, render

WE_API = "/apis/networking.istio.io/v1"
NOTE = "meshpilot.io/"
CLIENT_NAME = "curl-client"
CLIENT_READY_TIMEOUT = 30.0
# The client's Envoy reports requests over the access-log stream every 0.2 s
# (xds/translate/telemetry.py ALS_FLUSH_INTERVAL); stopping it sooner would drop the
# request from the source-side metrics.
ALS_FLUSH_WAIT = 0.35


def add_curl_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "curl", help="one HTTP request from inside the mesh (kubectl run ... curl)",
        usage="meshpilot curl URL [-n NS] [-H 'K: V']... [-X METHOD] [-d DATA] [-w FORMAT] "
              "[-s] [-i] [-o FILE] [--via NAME | -x http://127.0.0.1:PORT] "
              "[--resolve HOST:PORT:ADDR] [-k] [--cacert FILE]",
        description="Send one request through a mesh sidecar (curl's options and exit "
                    "codes). Without --via or -x, a client sidecar in NS is reused or "
                    "started for the request.")
    p.add_argument("url", metavar="URL")
    p.add_argument("-n", "--namespace", default="default",
                   help="namespace of the client (short names resolve there; default: "
                        "default)")
    p.add_argument("-H", "--header", action="append", default=[], metavar="'K: V'",
                   help="extra header; 'K:' drops a default header; repeatable")
    p.add_argument("-X", "--request", metavar="METHOD", help="request method")
    p.add_argument("-d", "--data", dest="data", action="append", default=[],
                   type=lambda v: ("ascii", v), metavar="DATA",
                   help="POST body (@FILE reads a file, newlines stripped); repeatable, "
                        "joined with &")
    p.add_argument("--data-raw", dest="data", action="append", type=lambda v: ("raw", v),
                   metavar="DATA", help="like -d, without @FILE")
    p.add_argument("--data-binary", dest="data", action="append",
                   type=lambda v: ("binary", v), metavar="DATA",
                   help="like -d, @FILE sent as is")
    p.add_argument("-w", "--write-out", metavar="FORMAT",
                   help="print after the transfer: %%{http_code} %%{time_total} "
                        "%%{time_connect} %%{size_download} %%{remote_ip} %%{remote_port} ... "
                        "(curl's variables); @FILE reads the format")
    p.add_argument("-s", "--silent", action="store_true", help="no error messages")
    p.add_argument("-S", "--show-error", action="store_true",
                   help="with -s, still show error messages")
    p.add_argument("-i", "--include", action="store_true",
                   help="include the response status line and headers in the output")
    p.add_argument("-I", "--head", action="store_true", help="HEAD request, show headers")
    p.add_argument("-o", "--output", metavar="FILE", help="write the body to FILE")
    p.add_argument("-f", "--fail", action="store_true",
                   help="exit 22 on HTTP status >= 400, without printing the body")
    p.add_argument("--fail-with-body", action="store_true",
                   help="exit 22 on HTTP status >= 400, printing the body")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show the route taken, the request and response headers on stderr")
    p.add_argument("-A", "--user-agent", default=f"meshpilot-curl/{__version__}",
                   metavar="UA")
    p.add_argument("-u", "--user", metavar="USER:PASSWORD", help="basic authentication")
    p.add_argument("-b", "--cookie", action="append", default=[], metavar="NAME=VALUE",
                   help="send a cookie (repeatable)")
    p.add_argument("-m", "--max-time", type=float, metavar="SECONDS",
                   help="give up after SECONDS in all (exit 28)")
    p.add_argument("--connect-timeout", type=float, metavar="SECONDS",
                   help="give up connecting after SECONDS (exit 28)")
    route = p.add_mutually_exclusive_group()
    route.add_argument("--via", metavar="NAME",
                       help="go through sidecar NAME's outbound port (its WorkloadEntry in "
                            "-n NS, or any replica of workload NAME)")
    route.add_argument("-x", "--proxy", metavar="http://127.0.0.1:PORT",
                       help="go through this explicit HTTP proxy")
    p.add_argument("--resolve", action="append", default=[], metavar="HOST:PORT:ADDR",
                   help="connect to ADDR for HOST:PORT (SNI and Host stay HOST); a gateway "
                        "registered at ADDR translates PORT through its port map")
    p.add_argument("--gateway", metavar="NAME[.NS]",
                   help="which gateway's port map to use when several bind the port")
    p.add_argument("-k", "--insecure", action="store_true",
                   help="do not verify the server's certificate")
    p.add_argument("--cacert", metavar="FILE", help="CA bundle to verify the server with")
    p.add_argument("--cert", metavar="FILE", help="client certificate (PEM), for MUTUAL TLS")
    p.add_argument("--key", metavar="FILE", help="client certificate's key (PEM)")
    p.add_argument("--server", metavar="URL",
                   help="control plane API address (default: $MESHPILOT_SERVER or "
                        "http://127.0.0.1:15014)")
    p.add_argument("--envoy", metavar="PATH",
                   help="Envoy binary for a short-lived client sidecar")
    p.set_defaults(func=curl)


class _Reporter:
    """curl's stderr conventions: `-s` hides errors unless `-S`; `-v` traces."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.show_errors = not args.silent or args.show_error
        self.verbose = args.verbose

    def error(self, e: CurlError) -> int:
        if self.show_errors:
            print(f"meshpilot curl: ({e.code}) {e.message}", file=sys.stderr, flush=True)
        return e.code

    def warn(self, text: str) -> None:
        if self.show_errors:
            print(f"meshpilot curl: {text}", file=sys.stderr, flush=True)

    def trace(self, text: str) -> None:
        if self.verbose:
            print(text, file=sys.stderr, flush=True)


# --- building the request ----------------------------------------------------------------------

def _read_data(kind: str, value: str) -> bytes:
    if kind == "raw" or not value.startswith("@"):
        return value.encode()
    name = value[1:]
    try:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as e:
        raise CurlError(READ_ERROR, f"Failed to open/read local data from file {name}: "
                        f"{e.strerror or e}") from None
    return data.replace(b"\r", b"").replace(b"\n", b"") if kind == "ascii" else data


def build_request(args: argparse.Namespace, url: Url) -> Request:
    body = b"&".join(_read_data(k, v) for k, v in args.data) if args.data else None
    method = args.request or ("HEAD" if args.head else "POST" if body is not None else "GET")
    headers = list(args.header)
    for cookie in args.cookie:
        if "=" not in cookie:
            raise CurlError(FAILED_INIT, f"-b {cookie!r}: cookie files are not supported; "
                            "give NAME=VALUE")
    if args.cookie:
        headers.insert(0, "Cookie: " + "; ".join(args.cookie))
    try:
        hdrs = build_headers(url, headers, user_agent=args.user_agent, body=body,
                             content_type="application/x-www-form-urlencoded", auth=args.user)
    except ValueError as e:
        raise CurlError(FAILED_INIT, str(e)) from None
    return Request(method, url, hdrs, body)


# --- choosing the route ------------------------------------------------------------------------

def _annotations(we: dict[str, Any]) -> dict[str, str]:
    return (we.get("metadata") or {}).get("annotations") or {}


def _labels(we: dict[str, Any]) -> dict[str, str]:
    return (we.get("spec") or {}).get("labels") or (we.get("metadata") or {}).get("labels") or {}


def _name(we: dict[str, Any]) -> str:
    meta = we.get("metadata") or {}
    return f"{meta.get('name')}.{meta.get('namespace')}"


def _is_local(we: dict[str, Any]) -> bool:
    """Registered on this machine in this boot (or by a proxy too old to say)."""
    from ..proxy.pids import boot_id

    boot = _annotations(we).get(NOTE + "boot-id")
    return boot is None or boot == boot_id()


def _entries(args: argparse.Namespace, namespace: str | None) -> list[dict[str, Any]]:
    from .client import ApiError, Client

    path = (f"{WE_API}/namespaces/{namespace}/workloadentries" if namespace
            else f"{WE_API}/workloadentries")
    try:
        return list((Client(args.server, timeout=10.0).get(path) or {}).get("items") or [])
    except ApiError as e:
        raise CurlError(COULDNT_RESOLVE_PROXY, f"Could not resolve proxy: {e}") from None


def _outbound(we: dict[str, Any]) -> int | None:
    port = _annotations(we).get(NOTE + "outbound-port", "")
    return int(port) if port.isdigit() else None


def via_route(args: argparse.Namespace) -> Route:
    """`--via NAME`: a sidecar by WorkloadEntry name, else any replica of workload NAME."""
    ns = args.namespace
    items = [we for we in _entries(args, ns) if _outbound(we) and _is_local(we)]
    exact = [we for we in items if (we.get("metadata") or {}).get("name") == args.via]
    found = exact or sorted(
        (we for we in items if _annotations(we).get(NOTE + "workload") == args.via), key=_name)
    if not found:
        raise CurlError(COULDNT_RESOLVE_PROXY, f"Could not resolve proxy: no sidecar or workload "
                        f"{args.via!r} on this machine in namespace {ns} "
                        f"(see: meshpilot get we -n {ns})")
    we = found[0]
    port = _outbound(we)
    assert port is not None
    return Route(("127.0.0.1", port), proxy=True,
                 note=f"through sidecar {_name(we)} (outbound proxy 127.0.0.1:{port})")


def proxy_route(text: str) -> Route:
    """`-x`: only an address on this machine's terms, never a name to look up."""
    raw = text if "://" in text else "http://" + text
    url = parse_url(raw)
    if url.scheme != "http":
        raise CurlError(FAILED_INIT, f"-x {text}: only http:// proxies (a sidecar's outbound "
                        "port) are supported")
    host = "127.0.0.1" if url.host == "localhost" else url.host
    if not is_ip(host):
        raise CurlError(COULDNT_RESOLVE_PROXY, f"Could not resolve proxy: {url.host} "
                        "(give an IP address)")
    port = url.port if ":" in raw.split("://", 1)[1] else 1080
    return Route((host, port), proxy=True, note=f"through proxy {host}:{port}")


def _same_host(registered: str, address: str) -> bool:
    if registered == address:
        return True
    try:
        a, b = ipaddress.ip_address(registered), ipaddress.ip_address(address)
    except ValueError:
        return False
    return a.is_unspecified or (a.is_loopback and b.is_loopback)


def parse_port_map(text: str) -> dict[int, int]:
    result: dict[int, int] = {}
    for entry in text.split(","):
        gw, _, bind = entry.strip().partition(":")
        if gw.isdigit() and (bind or gw).isdigit():
            result[int(gw)] = int(bind or gw)
    return result


def gateway_binding(entries: list[dict[str, Any]], address: str, port: int,
                    gateway: str | None = None) -> tuple[int, str] | None:
    """(bind port, gateway name) when a gateway registered at `address` maps Gateway
    port `port` elsewhere; None when none does (connect to the port as given)."""
    found: list[tuple[dict[str, Any], int]] = []
    for we in entries:
        notes = _annotations(we)
        if notes.get(NOTE + "proxy-type") != "gateway" or not _is_local(we):
            continue
        mapping = parse_port_map(notes.get(NOTE + "port-map", ""))
        registered = str((we.get("spec") or {}).get("address") or "127.0.0.1")
        if port in mapping and _same_host(registered, address):
            found.append((we, mapping[port]))
    if gateway:
        found = [(we, b) for we, b in found if _name(we) == gateway
                 or _name(we).split(".")[0] == gateway]
    if len(found) > 1:
        ingress = [(we, b) for we, b in found if _labels(we).get("istio") == "ingressgateway"]
        found = ingress or found
    if len({b for _, b in found}) > 1:
        names = ", ".join(f"{_name(we)} (:{b})" for we, b in found)
        raise CurlError(FAILED_INIT, f"{len(found)} gateways serve port {port} at {address}: "
                        f"{names}; pick one with --gateway NAME")
    if not found:
        return None
    we, bind = found[0]
    return bind, _name(we)


def direct_route(args: argparse.Namespace, url: Url, address: str,
                 reporter: _Reporter) -> Route:
    host = "127.0.0.1" if address == "localhost" else address
    try:
        binding = gateway_binding(_entries(args, None), host, url.port, args.gateway)
    except CurlError as e:
        if e.code != COULDNT_RESOLVE_PROXY:
            raise
        reporter.trace(f"* meshpilot: no control plane to read gateway port maps from ({e})")
        binding = None
    if binding is None:
        return Route((host, url.port), note=f"direct to {host}:{url.port}")
    bind, name = binding
    return Route((host, bind), note=f"direct to gateway {name}: port {url.port} is bound at "
                                    f"{host}:{bind}")


def client_route(args: argparse.Namespace) -> Route | None:
    """A running `curl-client` sidecar in the namespace, if there is one on this machine."""
    from ..proxy.pids import alive

    for we in sorted(_entries(args, args.namespace), key=_name):
        meta = we.get("metadata") or {}
        if meta.get("name") != CLIENT_NAME and _labels(we).get("app") != CLIENT_NAME:
            continue
        port, pid = _outbound(we), _annotations(we).get(NOTE + "pid", "")
        if port and _is_local(we) and (not pid.isdigit() or alive(int(pid))):
            return Route(("127.0.0.1", port), proxy=True,
                         note=f"through sidecar {_name(we)} (outbound proxy 127.0.0.1:{port})")
    return None


@contextlib.contextmanager
def ephemeral_client(args: argparse.Namespace, reporter: _Reporter) -> Iterator[Route]:
    """A client sidecar for one request: Envoy only, not registered (a WorkloadEntry
    would make the whole mesh recompute twice per request), stopped on the way out."""
    from ..proxy.ports import free_port
    from ..proxy.supervisor import ProxyInstance, ProxyRun, StartError, prepare
    from ..xds.types import ProxyInfo

    started = time.monotonic()
    try:
        shared = prepare(args.envoy, args.server, None)
    except StartError as e:
        raise CurlError(COULDNT_RESOLVE_PROXY, f"Could not resolve proxy: no client sidecar "
                        f"can start: {e}") from None
    outbound = free_port()
    info = ProxyInfo(name=f"{CLIENT_NAME}-{os.getpid()}", namespace=args.namespace,
                     kind="sidecar", labels={"app": CLIENT_NAME}, outbound_port=outbound,
                     workload_name=CLIENT_NAME)
    with tempfile.TemporaryDirectory(prefix="meshpilot-curl-") as tmp:
        run = ProxyRun(info=info, admin_port=free_port(), state_dir=Path(tmp),
                       server=args.server, envoy=args.envoy, register=False)
        instance = ProxyInstance(run, shared, log=reporter.trace)
        used = False
        try:
            instance.start()
            deadline = time.monotonic() + CLIENT_READY_TIMEOUT
            while not instance.ready():
                ended = instance.poll()
                if ended is not None or time.monotonic() > deadline:
                    assert instance.envoy is not None
                    why = (f"exited with code {ended.code}" if ended is not None
                           else f"not ready after {CLIENT_READY_TIMEOUT:g}s")
                    raise CurlError(COULDNT_CONNECT, f"client sidecar {info.id} {why}:\n"
                                    f"{instance.envoy.log_tail(10)}")
                time.sleep(0.02)
            reporter.trace(f"* meshpilot: client sidecar {info.id} ready in "
                           f"{time.monotonic() - started:.2f}s")
            used = True
            yield Route(("127.0.0.1", outbound), proxy=True,
                        note=f"through a short-lived client sidecar {info.id} "
                             f"(outbound proxy 127.0.0.1:{outbound})")
        finally:
            if used:
                sys.stdout.flush()
                time.sleep(ALS_FLUSH_WAIT)
            instance.stop(grace=2.0)


@contextlib.contextmanager
def choose_route(args: argparse.Namespace, url: Url, resolves: list[Resolve],
                 reporter: _Reporter) -> Iterator[Route]:
    if args.proxy:
        yield proxy_route(args.proxy)
        return
    if args.via:
        yield via_route(args)
        return
    address = resolved(resolves, url.host, url.port)
    if address is None and (is_ip(url.host) or url.host == "localhost"):
        address = url.host
    if address is not None:
        yield direct_route(args, url, address, reporter)
        return
    reuse = client_route(args)
    if reuse is not None:
        yield reuse
        return
    with ephemeral_client(args, reporter) as route:
        yield route


# --- output ------------------------------------------------------------------------------------

class _Sink:
    """Headers (-i) and body to stdout or -o FILE; the body held back on -f errors."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.file: IO[bytes] | None = None
        self.out: IO[bytes] = sys.stdout.buffer
        self.suppress = False

    def open(self) -> None:
        if self.args.output and self.args.output != "-":
            try:
                self.file = self.out = open(self.args.output, "wb")  # noqa: SIM115
            except OSError as e:
                raise CurlError(WRITE_ERROR, f"Failed to open the file {self.args.output}: "
                                f"{e.strerror or e}") from None

    def _write(self, data: bytes) -> None:
        try:
            self.out.write(data)
        except OSError as e:
            raise CurlError(WRITE_ERROR, f"Failure writing output to destination: "
                            f"{e.strerror or e}") from None

    def headers(self, t: Transfer, status_line: str) -> None:
        if self.args.fail and t.http_code >= 400:
            self.suppress = True
            return
        if self.args.include or self.args.head:
            lines = [status_line] + [f"{k}: {v}" for k, v in t.headers]
            self._write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def body(self, chunk: bytes) -> None:
        if not self.suppress:
            self._write(chunk)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.out.flush()
        if self.file is not None:
            self.file.close()


def _write_out(fmt: str | None, t: Transfer, reporter: _Reporter) -> None:
    if not fmt:
        return
    if fmt.startswith("@"):
        name = fmt[1:]
        try:
            fmt = sys.stdin.read() if name == "-" else Path(name).read_text()
        except OSError as e:
            reporter.warn(f"cannot read the --write-out file {name}: {e.strerror or e}")
            return
    text = render(fmt, t, reporter.warn)
    sys.stdout.buffer.write(text.encode())
    sys.stdout.buffer.flush()


def curl(args: argparse.Namespace) -> int:
    reporter = _Reporter(args)
    transfer: Transfer | None = None
    sink = _Sink(args)
    try:
        try:
            url = parse_url(args.url)
            resolves = [parse_resolve(r) for r in args.resolve]
        except ValueError as e:
            raise CurlError(FAILED_INIT, str(e)) from None
        request = build_request(args, url)
        tls = (Tls(url.host, insecure=args.insecure, cacert=args.cacert, cert=args.cert,
                   key=args.key) if url.scheme == "https" else None)
        limits = Limits(args.connect_timeout, args.max_time)
        with choose_route(args, url, resolves, reporter) as route:
            reporter.trace(f"* meshpilot: {route.note}")
            sink.open()
            try:
                transfer = perform(request, route, tls=tls, limits=limits,
                                   output=Output(sink.headers, sink.body),
                                   trace=reporter.trace if args.verbose else None)
            finally:
                sink.close()
                if transfer is not None:
                    _write_out(args.write_out, transfer, reporter)
        if (args.fail or args.fail_with_body) and transfer.http_code >= 400:
            raise CurlError(HTTP_RETURNED_ERROR,
                            f"The requested URL returned error: {transfer.http_code}")
        return 0
    except CurlError as e:
        if transfer is None:
            _write_out(args.write_out, e.transfer or Transfer(
                url_effective=args.url, exitcode=e.code, errormsg=e.message), reporter)
        return reporter.error(e)
