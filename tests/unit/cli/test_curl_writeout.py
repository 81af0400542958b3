"""`meshpilot curl -w`: curl's write-out variables, formats and escapes."""

from __future__ import annotations

import json

from meshpilot.cli.curl_writeout import Transfer, render


def transfer(**kw) -> Transfer:
    base = dict(url_effective="http://sample-app/", http_code=200, http_version="1.1",
                remote_ip="127.0.0.1", remote_port=15001, time_connect=0.000412,
                time_total=1.5, time_starttransfer=1.49, size_download=32,
                headers=[("Server", "nginx/1.21"), ("x-version", "v1"), ("Set-Cookie", "a=1"),
                         ("set-cookie", "b=2")],
                content_type="text/plain", num_connects=1)
    base.update(kw)
    return Transfer(**base)


def test_the_seed_formats() -> None:
    t = transfer()
    assert render("Total time: %{time_total}s\\n", t) == "Total time: 1.500000s\n"
    assert render("HTTP Code: %{http_code}\\n", t) == "HTTP Code: 200\n"
    assert render("%{http_code} %{time_total}", t) == "200 1.500000"


def test_every_documented_variable() -> None:
    out = render("%{http_code}|%{time_total}|%{time_connect}|%{size_download}|%{remote_ip}|"
                 "%{remote_port}", transfer())
    assert out == "200|1.500000|0.000412|32|127.0.0.1|15001"


def test_no_response_prints_000_and_zero_times() -> None:
    t = Transfer(url_effective="http://sample-app/")
    assert render("%{http_code} %{time_total} %{remote_ip}|%{remote_port}|%{http_version}",
                  t) == "000 0.000000 ||0"


def test_escapes_and_percent() -> None:
    t = transfer()
    assert render("a\\tb\\rc\\nd", t) == "a\tb\rc\nd"
    assert render("100%% %{http_code}", t) == "100% 200"
    # Not an escape or a variable: printed as is, like curl.
    assert render("\\x %d 50% %{unclosed", t) == "\\x %d 50% %{unclosed"


def test_unknown_variable_warns_and_prints_nothing() -> None:
    warnings: list[str] = []
    assert render("[%{nope}]", transfer(), warnings.append) == "[]"
    assert warnings == ["unknown --write-out variable: 'nope'"]


def test_header_variable_is_case_insensitive_and_joins_repeats() -> None:
    t = transfer()
    assert render("%header{X-Version}", t) == "v1"
    assert render("%header{set-cookie}", t) == "a=1, b=2"
    assert render("[%header{absent}]", t) == "[]"


def test_json_has_numbers_as_numbers() -> None:
    data = json.loads(render("%{json}", transfer()))
    assert data["http_code"] == 200
    assert data["time_total"] == 1.5
    assert data["remote_port"] == 15001
    assert data["remote_ip"] == "127.0.0.1"
    assert data["size_download"] == 32


def test_speed_and_code_alias() -> None:
    t = transfer(size_download=3000, time_total=1.5)
    assert render("%{speed_download} %{response_code} %{num_connects}", t) == "2000 200 1"
