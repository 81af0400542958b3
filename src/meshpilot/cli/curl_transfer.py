"""One HTTP/1.1 exchange for `meshpilot curl`, with curl's timings and exit codes.

Plain sockets plus `http.client.HTTPResponse` (for parsing only), rather than
urllib: the request must go out exactly as curl sends it (absolute-form through an
explicit proxy, the user's Host header untouched, a CONNECT tunnel for HTTPS through a
proxy, SNI = the URL's host while connecting to a `--resolve` address), and every phase
is timed for `-w`. Nothing here resolves a name: callers pass an address.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from .curl_writeout import Transfer

# curl's exit codes (libcurl CURLcode), the ones this client can produce.
UNSUPPORTED_PROTOCOL = 1
FAILED_INIT = 2
URL_MALFORMAT = 3
COULDNT_RESOLVE_PROXY = 5
COULDNT_RESOLVE_HOST = 6
COULDNT_CONNECT = 7
WEIRD_SERVER_REPLY = 8
PARTIAL_FILE = 18
HTTP_RETURNED_ERROR = 22
WRITE_ERROR = 23
READ_ERROR = 26
OPERATION_TIMEDOUT = 28
SSL_CONNECT_ERROR = 35
GOT_NOTHING = 52
SSL_CERTPROBLEM = 58
RECV_ERROR = 56
SEND_ERROR = 55
PEER_FAILED_VERIFICATION = 60
SSL_CACERT_BADFILE = 77

CHUNK = 64 * 1024


class CurlError(Exception):
    """A failed transfer: curl's exit code and message (`curl: (7) Failed to connect...`)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.transfer: Transfer | None = None  # what happened before the failure (for -w)


# --- URLs and --resolve -----------------------------------------------------------------------

@dataclass(frozen=True)
class Url:
    scheme: str  # http | https
    host: str  # without brackets
    port: int
    target: str  # origin-form: /path?query
    text: str  # the URL as sent in absolute-form

    @property
    def authority(self) -> str:
        """host[:port], the port only when not the scheme's default (curl's Host header)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_url(text: str) -> Url:
    """curl's reading of a URL: no scheme means http://; only http and https."""
    raw = text if "://" in text else "http://" + text
    try:
        parts = urllib.parse.urlsplit(raw)
        port = parts.port
    except ValueError as e:
        raise CurlError(URL_MALFORMAT, f"URL rejected: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise CurlError(UNSUPPORTED_PROTOCOL, f'Protocol "{scheme}" not supported')
    host = parts.hostname or ""
    if not host:
        raise CurlError(URL_MALFORMAT, "URL rejected: No host part in the URL")
    port = port or (443 if scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    url = Url(scheme, host, port, target, "")
    return Url(scheme, host, port, target, f"{scheme}://{url.authority}{target}")


@dataclass(frozen=True)
class Resolve:
    """One `--resolve HOST:PORT:ADDR[,ADDR...]` entry (HOST `*` matches any host)."""

    host: str
    port: int
    addresses: tuple[str, ...]

    def matches(self, host: str, port: int) -> bool:
        return port == self.port and (self.host == "*" or self.host.lower() == host.lower())


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _split_host_port(text: str) -> tuple[str, str, str]:
    """`HOST:PORT:REST` where HOST may be `[v6]`."""
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            raise ValueError("unclosed '['")
        host, rest = text[1:end], text[end + 1:]
        if not rest.startswith(":"):
            raise ValueError("want HOST:PORT:ADDRESS")
        port, sep, tail = rest[1:].partition(":")
    else:
        host, sep1, rest = text.partition(":")
        port, sep, tail = rest.partition(":")
        if not sep1:
            raise ValueError("want HOST:PORT:ADDRESS")
    if not sep:
        raise ValueError("want HOST:PORT:ADDRESS")
    return host, port, tail


def parse_resolve(text: str) -> Resolve:
    """curl's `--resolve` syntax (a leading `+`, curl's "resolve later" flag, is accepted
    and means the same here). Addresses must be IP literals or `localhost`: meshpilot
    never looks a name up."""
    body = text[1:] if text.startswith("+") else text
    try:
        host, port_text, rest = _split_host_port(body)
    except ValueError as e:
        raise ValueError(f"bad --resolve {text!r}: {e} (e.g. "
                         "sample-app.hashfoundry.local:443:127.0.0.1)") from None
    if not host or not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise ValueError(f"bad --resolve {text!r}: want HOST:PORT:ADDRESS with a port 1..65535")
    addresses = []
    for addr in rest.split(","):
        addr = addr.strip()
        if addr.startswith("[") and addr.endswith("]"):
            addr = addr[1:-1]
        if addr == "localhost":
            addr = "127.0.0.1"
        if not is_ip(addr):
            raise ValueError(f"bad --resolve {text!r}: {addr!r} is not an IP address")
        addresses.append(addr)
    return Resolve(host, int(port_text), tuple(addresses))


def resolved(entries: list[Resolve], host: str, port: int) -> str | None:
    """The address `--resolve` gives HOST:PORT (the last matching entry wins, as in
    curl, where a later entry replaces an earlier one)."""
    for entry in reversed(entries):
        if entry.matches(host, port):
            return entry.addresses[0]
    return None


# --- the request ------------------------------------------------------------------------------

@dataclass
class Request:
    method: str
    url: Url
    headers: list[tuple[str, str]]  # in order; the user's overrides already applied
    body: bytes | None = None

    def head(self, absolute: bool) -> bytes:
        target = self.url.text if absolute else self.url.target
        lines = [f"{self.method} {target} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def build_headers(url: Url, user: list[str], *, user_agent: str, body: bytes | None,
                  content_type: str | None, auth: str | None = None) -> list[tuple[str, str]]:
    """curl's headers: Host, User-Agent, Accept, then the user's `-H` lines; `-H 'Name:'`
    removes a header curl would send, `-H 'Name;'` sends it empty."""
    defaults: list[tuple[str, str]] = [("Host", url.authority)]
    if auth is not None:
        defaults.append(("Authorization", "Basic " + base64.b64encode(auth.encode()).decode()))
    defaults += [("User-Agent", user_agent), ("Accept", "*/*")]
    if body is not None:
        defaults.append(("Content-Length", str(len(body))))
        if content_type:
            defaults.append(("Content-Type", content_type))
    custom: list[tuple[str, str]] = []
    removed: set[str] = set()
    for line in user:
        name, sep, value = line.partition(":")
        if not sep:
            if line.endswith(";") and line[:-1].strip():
                custom.append((line[:-1].strip(), ""))
                continue
            raise ValueError(f"bad header {line!r}: want 'Name: value'")
        name, value = name.strip(), value.strip()
        if not name or any(c in name for c in " \t\r\n"):
            raise ValueError(f"bad header {line!r}: want 'Name: value'")
        if not value:
            removed.add(name.lower())
        else:
            custom.append((name, value))
    overridden = {k.lower() for k, _ in custom} | removed
    return [(k, v) for k, v in defaults if k.lower() not in overridden] + custom


# --- the exchange -----------------------------------------------------------------------------

@dataclass
class Tls:
    """`-k`, `--cacert`, `--cert`/`--key`; `server_name` is the SNI and the name the
    certificate must carry (the URL's host, also when `--resolve` picks the address)."""

    server_name: str
    insecure: bool = False
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None

    def context(self) -> ssl.SSLContext:
        try:
            ctx = ssl.create_default_context(cafile=self.cacert)
        except (OSError, ssl.SSLError) as e:
            raise CurlError(SSL_CACERT_BADFILE,
                            f"error setting certificate file: {self.cacert} ({e})") from None
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert:
            try:
                ctx.load_cert_chain(self.cert, self.key)
            except (OSError, ssl.SSLError) as e:
                raise CurlError(SSL_CERTPROBLEM,
                                f"could not load client certificate {self.cert}: {e}") from None
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx


@dataclass
class Route:
    """Where the bytes go: `address` is connected to; `proxy` says it is an explicit HTTP
    proxy (absolute-form for http://, a CONNECT tunnel for https://)."""

    address: tuple[str, int]
    proxy: bool = False
    note: str = ""  # how the route was chosen, for -v


@dataclass
class Limits:
    connect_timeout: float | None = None
    max_time: float | None = None


Trace = Callable[[str], None]


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


@dataclass
class _Clock:
    limits: Limits
    start: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def remaining(self) -> float | None:
        if self.limits.max_time is None:
            return None
        return self.limits.max_time - self.elapsed()

    def timeout(self, phase: float | None = None) -> float | None:
        """The socket timeout for the next blocking step: the phase's own limit and
        whatever -m leaves, whichever is shorter; raise 28 when -m is spent."""
        left = self.remaining()
        if left is not None and left <= 0:
            raise self.expired(0)
        options = [x for x in (phase, left) if x is not None]
        return min(options) if options else None

    def expired(self, received: int) -> CurlError:
        return CurlError(OPERATION_TIMEDOUT, f"Operation timed out after "
                         f"{_ms(self.elapsed())} milliseconds with {received} bytes received")


def _connect(route: Route, clock: _Clock, t: Transfer, trace: Trace | None) -> socket.socket:
    host, port = route.address
    if trace:
        trace(f"*   Trying {host}:{port}...")
    try:
        sock = socket.create_connection(
            (host, port), timeout=clock.timeout(clock.limits.connect_timeout))
    except TimeoutError:
        raise CurlError(OPERATION_TIMEDOUT, f"Failed to connect to {host} port {port} after "
                        f"{_ms(clock.elapsed())} ms: Timeout was reached") from None
    except OSError as e:
        raise CurlError(COULDNT_CONNECT, f"Failed to connect to {host} port {port} after "
                        f"{_ms(clock.elapsed())} ms: Couldn't connect to server "
                        f"({e.strerror or e})") from None
    t.time_connect = clock.elapsed()
    t.num_connects = 1
    peer, local = sock.getpeername(), sock.getsockname()
    t.remote_ip, t.remote_port = peer[0], peer[1]
    t.local_ip, t.local_port = local[0], local[1]
    if trace:
        trace(f"* Connected to {host} ({peer[0]}) port {peer[1]}")
    return sock


def _read_head(sock: socket.socket, clock: _Clock) -> bytes:
    """A proxy's CONNECT answer, up to the blank line (no body follows a 200)."""
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(clock.timeout())
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > 65536:
            break
    return data


def _tunnel(sock: socket.socket, url: Url, clock: _Clock, trace: Trace | None) -> None:
    authority = f"[{url.host}]:{url.port}" if ":" in url.host else f"{url.host}:{url.port}"
    request = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
    if trace:
        trace(f"* Establish HTTP proxy tunnel to {authority}")
        for line in request.rstrip().split("\r\n"):
            trace(f"> {line}")
    try:
        sock.sendall(request.encode())
        head = _read_head(sock, clock)
    except TimeoutError:
        raise clock.expired(0) from None
    except OSError as e:
        raise CurlError(RECV_ERROR, f"Recv failure: {e.strerror or e}") from None
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    if trace:
        trace(f"< {status_line}")
    parts = status_line.split()
    if len(parts) < 2 or parts[1] != "200":
        code = parts[1] if len(parts) > 1 else "?"
        raise CurlError(RECV_ERROR, f"CONNECT tunnel failed, response {code}")


def _handshake(sock: socket.socket, tls: Tls, clock: _Clock, t: Transfer,
               trace: Trace | None) -> ssl.SSLSocket:
    ctx = tls.context()
    try:
        sock.settimeout(clock.timeout(clock.limits.connect_timeout))
        secure = ctx.wrap_socket(sock, server_hostname=tls.server_name)
    except ssl.SSLCertVerificationError as e:
        t.ssl_verify_result = e.verify_code or 1
        raise CurlError(PEER_FAILED_VERIFICATION, f"SSL certificate problem: "
                        f"{e.verify_message or e.reason}") from None
    except ssl.SSLError as e:
        raise CurlError(SSL_CONNECT_ERROR, f"TLS connect error: {e.reason or e}") from None
    except TimeoutError:
        raise CurlError(OPERATION_TIMEDOUT, f"SSL connection timeout after "
                        f"{_ms(clock.elapsed())} ms") from None
    except OSError as e:
        raise CurlError(SSL_CONNECT_ERROR, f"TLS connect error: {e.strerror or e} (the server "
                        "closed the connection during the handshake)") from None
    t.time_appconnect = clock.elapsed()
    if trace:
        cert = secure.getpeercert() or {}
        subject = ", ".join("=".join(x) for rdn in cert.get("subject", ()) for x in rdn)
        trace(f"* SSL connection using {secure.version()} / {secure.cipher()[0]}"
              f"{f' (server certificate: {subject})' if subject else ''}")
    return secure


@dataclass
class Output:
    """Where the response goes as it arrives: headers once, then body chunks."""

    on_headers: Callable[[Transfer, str], None]  # (transfer, status line)
    on_body: Callable[[bytes], None]


def perform(request: Request, route: Route, *, tls: Tls | None, limits: Limits,
            output: Output, trace: Trace | None = None) -> Transfer:
    """Send `request` along `route` and stream the answer to `output`. Returns the
    transfer (also on HTTP errors: status codes are not failures here). Raises
    CurlError with the transfer so far in `error.transfer`."""
    clock = _Clock(limits)
    url = request.url
    t = Transfer(url_effective=url.text, method=request.method, scheme=url.scheme)
    sock: socket.socket | None = None
    try:
        t.time_namelookup = clock.elapsed()  # nothing to look up: addresses are given
        sock = _connect(route, clock, t, trace)
        if url.scheme == "https":
            if route.proxy:
                _tunnel(sock, url, clock, trace)
            assert tls is not None
            sock = _handshake(sock, tls, clock, t, trace)
        absolute = route.proxy and url.scheme == "http"
        head = request.head(absolute)
        t.size_request = len(head)
        t.size_upload = len(request.body or b"")
        t.time_pretransfer = clock.elapsed()
        if trace:
            for line in head.decode("latin-1").rstrip().split("\r\n"):
                trace(f"> {line}")
        try:
            sock.settimeout(clock.timeout())
            sock.sendall(head + (request.body or b""))
        except TimeoutError:
            raise clock.expired(0) from None
        except OSError as e:
            raise CurlError(SEND_ERROR, f"Send failure: {e.strerror or e}") from None
        _receive(sock, request, clock, t, output, trace)
        t.time_total = clock.elapsed()
        return t
    except CurlError as e:
        t.time_total = clock.elapsed()
        t.exitcode, t.errormsg = e.code, e.message
        e.transfer = t
        raise
    finally:
        if sock is not None:
            sock.close()


def _receive(sock: socket.socket, request: Request, clock: _Clock, t: Transfer,
             output: Output, trace: Trace | None) -> None:
    resp = http.client.HTTPResponse(sock, method=request.method)
    try:
        sock.settimeout(clock.timeout())
        resp.begin()
    except TimeoutError:
        raise clock.expired(0) from None
    except http.client.RemoteDisconnected:
        raise CurlError(GOT_NOTHING, "Empty reply from server") from None
    except (http.client.BadStatusLine, http.client.LineTooLong) as e:
        raise CurlError(WEIRD_SERVER_REPLY, f"Weird server reply: {e}") from None
    except OSError as e:
        raise CurlError(RECV_ERROR, f"Recv failure: {e.strerror or e}") from None
    t.time_starttransfer = clock.elapsed()
    t.http_code = resp.status
    t.http_version = "1.1" if resp.version == 11 else "1.0"
    t.headers = list(resp.getheaders())
    t.content_type = t.header("content-type") or ""
    status_line = f"HTTP/{t.http_version} {resp.status} {resp.reason}".rstrip()
    t.size_header = len(status_line) + 2 + sum(len(k) + len(v) + 4 for k, v in t.headers) + 2
    if trace:
        trace(f"< {status_line}")
        for k, v in t.headers:
            trace(f"< {k}: {v}")
        trace("<")
    output.on_headers(t, status_line)
    try:
        while True:
            sock.settimeout(clock.timeout())
            chunk = resp.read(CHUNK)
            if not chunk:
                break
            t.size_download += len(chunk)
            output.on_body(chunk)
    except TimeoutError:
        raise clock.expired(t.size_download) from None
    except http.client.IncompleteRead as e:
        t.size_download += len(e.partial)
        raise CurlError(PARTIAL_FILE, f"transfer closed with "
                        f"{e.expected if e.expected is not None else 'outstanding'} bytes "
                        "remaining to read") from None
    except OSError as e:
        raise CurlError(RECV_ERROR, f"Recv failure: {e.strerror or e}") from None
    finally:
        resp.close()
