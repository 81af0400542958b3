"""`meshpilot curl`: URL and --resolve parsing, headers, and how the route is chosen
(gateway port maps, -x), without any network."""

from __future__ import annotations

import pytest

from meshpilot.cli.curl_command import gateway_binding, parse_port_map, proxy_route
from meshpilot.cli.curl_transfer import (
    URL_MALFORMAT,
    CurlError,
    Request,
    build_headers,
    parse_resolve,
    parse_url,
    resolved,
)

HOST = "sample-app.hashfoundry.local"


# --- URLs ---------------------------------------------------------------------------------

def test_url_defaults_and_authority() -> None:
    url = parse_url("sample-app/v2?x=1")
    assert (url.scheme, url.host, url.port, url.target) == ("http", "sample-app", 80, "/v2?x=1")
    assert url.text == "http://sample-app/v2?x=1"
    assert url.authority == "sample-app"
    https = parse_url(f"https://{HOST}/")
    assert (https.port, https.authority) == (443, HOST)
    odd = parse_url("http://sample-app:8080")
    assert (odd.target, odd.authority, odd.text) == ("/", "sample-app:8080",
                                                     "http://sample-app:8080/")
    v6 = parse_url("http://[::1]:9000/x")
    assert (v6.host, v6.authority) == ("::1", "[::1]:9000")


@pytest.mark.parametrize(("text", "code"), [
    ("ftp://x/", 1), ("http://:80/", URL_MALFORMAT), ("http://x:port/", URL_MALFORMAT)])
def test_bad_urls_exit_like_curl(text: str, code: int) -> None:
    with pytest.raises(CurlError) as info:
        parse_url(text)
    assert info.value.code == code


# --- --resolve ------------------------------------------------------------------------------

def test_resolve_parses_curl_syntax() -> None:
    entry = parse_resolve(f"{HOST}:443:127.0.0.1")
    assert (entry.host, entry.port, entry.addresses) == (HOST, 443, ("127.0.0.1",))
    assert parse_resolve("+a:80:[::1],127.0.0.2").addresses == ("::1", "127.0.0.2")
    assert parse_resolve("[::1]:80:127.0.0.1").host == "::1"
    assert parse_resolve("x:80:localhost").addresses == ("127.0.0.1",)


def test_resolve_matches_host_and_port_last_entry_wins() -> None:
    entries = [parse_resolve(f"{HOST}:443:127.0.0.1"), parse_resolve("*:80:127.0.0.3"),
               parse_resolve(f"{HOST.upper()}:443:127.0.0.2")]
    assert resolved(entries, HOST, 443) == "127.0.0.2"
    assert resolved(entries, "anything", 80) == "127.0.0.3"
    assert resolved(entries, HOST, 8443) is None


@pytest.mark.parametrize(("text", "message"), [
    ("bad", "want HOST:PORT:ADDRESS"),
    ("host:443", "want HOST:PORT:ADDRESS"),
    ("host:x:127.0.0.1", "port 1..65535"),
    ("host:0:127.0.0.1", "port 1..65535"),
    ("host:443:example.com", "'example.com' is not an IP address"),
    ("[::1:443:127.0.0.1", "unclosed"),
])
def test_bad_resolve_entries_are_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="bad --resolve") as info:
        parse_resolve(text)
    assert message in str(info.value)


# --- headers and the request line ------------------------------------------------------------

def test_headers_follow_curl_defaults_and_overrides() -> None:
    url = parse_url("http://sample-app/")
    headers = build_headers(url, ["version: v2", "User-Agent:", "Host: other", "X-Empty;"],
                            user_agent="ua/1", body=None, content_type=None)
    assert headers == [("Accept", "*/*"), ("version", "v2"), ("Host", "other"), ("X-Empty", "")]


def test_body_headers_and_basic_auth() -> None:
    url = parse_url("http://sample-app/echo")
    headers = dict(build_headers(url, [], user_agent="ua/1", body=b"a=1",
                                 content_type="application/x-www-form-urlencoded",
                                 auth="user:pw"))
    assert headers["Content-Length"] == "3"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["Authorization"] == "Basic dXNlcjpwdw=="


def test_bad_header_is_rejected() -> None:
    with pytest.raises(ValueError, match="want 'Name: value'"):
        build_headers(parse_url("http://x/"), ["no colon"], user_agent="u", body=None,
                      content_type=None)


def test_request_line_absolute_through_a_proxy_origin_form_otherwise() -> None:
    url = parse_url("http://sample-app/v2?q=1")
    req = Request("GET", url, [("Host", "sample-app")])
    assert req.head(absolute=True).startswith(b"GET http://sample-app/v2?q=1 HTTP/1.1\r\n")
    assert req.head(absolute=False) == b"GET /v2?q=1 HTTP/1.1\r\nHost: sample-app\r\n\r\n"


# --- routes -----------------------------------------------------------------------------------

def gateway(name: str, port_map: str, *, ns: str = "istio-system", address: str = "127.0.0.1",
            labels: dict[str, str] | None = None, boot: str | None = None) -> dict:
    notes = {"meshpilot.io/proxy-type": "gateway", "meshpilot.io/port-map": port_map}
    if boot:
        notes["meshpilot.io/boot-id"] = boot
    return {"metadata": {"name": name, "namespace": ns, "annotations": notes},
            "spec": {"address": address, "labels": labels or {}}}


def test_port_map_annotation() -> None:
    assert parse_port_map("80:8080,443:8443") == {80: 8080, 443: 8443}
    assert parse_port_map("9090") == {9090: 9090}


def test_gateway_port_map_translates_the_resolved_port() -> None:
    entries = [gateway("istio-ingressgateway", "80:28080,443:28443",
                       labels={"istio": "ingressgateway"})]
    assert gateway_binding(entries, "127.0.0.1", 443) == (28443,
                                                           "istio-ingressgateway.istio-system")
    assert gateway_binding(entries, "127.0.0.1", 8443) is None  # not a Gateway port: as is
    assert gateway_binding(entries, "10.0.0.1", 443) is None  # another address


def test_ingress_gateway_wins_over_egress_on_the_same_port() -> None:
    entries = [gateway("istio-egressgateway", "80:18080", labels={"istio": "egressgateway"}),
               gateway("istio-ingressgateway", "80:28080", labels={"istio": "ingressgateway"})]
    assert gateway_binding(entries, "127.0.0.1", 80) == (28080,
                                                          "istio-ingressgateway.istio-system")
    assert gateway_binding(entries, "127.0.0.1", 80, "istio-egressgateway")[0] == 18080


def test_ambiguous_gateways_ask_for_a_choice() -> None:
    entries = [gateway("a", "80:18080"), gateway("b", "80:28080")]
    with pytest.raises(CurlError, match="pick one with --gateway") as info:
        gateway_binding(entries, "127.0.0.1", 80)
    assert info.value.code == 2
    assert gateway_binding(entries, "127.0.0.1", 80, "b.istio-system") == (28080,
                                                                            "b.istio-system")


def test_gateways_of_other_machines_are_ignored() -> None:
    entries = [gateway("remote", "80:28080", boot="not-this-boot")]
    assert gateway_binding(entries, "127.0.0.1", 80) is None


def test_proxy_option_takes_addresses_only() -> None:
    assert proxy_route("http://127.0.0.1:15001").address == ("127.0.0.1", 15001)
    assert proxy_route("localhost:15001").address == ("127.0.0.1", 15001)
    assert proxy_route("127.0.0.1").address == ("127.0.0.1", 1080)  # curl's default port
    with pytest.raises(CurlError) as info:
        proxy_route("http://proxy.example.com:3128")
    assert info.value.code == 5
