"""Message text, origin and the JSON/YAML shapes, as istioctl prints them."""

from __future__ import annotations

import json

import yaml

from meshpilot.analyze import catalogue as msg
from meshpilot.analyze.catalogue import parse_level
from meshpilot.analyze.message import Message, Origin, go_format, sorted_deduped
from meshpilot.analyze.output import render

ORIGIN = Origin("VirtualService", "traffic-demo", "sample-app-routing", "routing.yaml", 3,
                {"{.spec.http[0].route[0].destination.host}": 17})


def test_go_format_verbs() -> None:
    assert go_format("Referenced %s not found: %q", ["host", "a\"b"]) == \
        'Referenced host not found: "a\\"b"'
    assert go_format("ports %v, port %d", [[80, 443], 8080]) == "ports [80 443], port 8080"
    assert go_format("%s and %s", ["one"]) == "one and %!s(MISSING)"


def test_log_line_with_file_and_field_line() -> None:
    m = Message(msg.REFERENCED_RESOURCE_NOT_FOUND, ("host+subset in destinationrule",
                                                     "sample-app+v3"), ORIGIN,
                ORIGIN.line_of("{.spec.http[0].route[0].destination.host}"))
    assert str(m) == ('Error [IST0101] (VirtualService traffic-demo/sample-app-routing '
                      'routing.yaml:17) Referenced host+subset in destinationrule not found: '
                      '"sample-app+v3"')
    no_line = Message(m.type, m.params, ORIGIN, ORIGIN.line_of("{.spec.nothing}"))
    assert "routing.yaml:3)" in str(no_line)


def test_origin_without_file_and_json_files() -> None:
    live = Origin("Gateway", "shop", "gw")
    assert Message(msg.CONFLICTING_GATEWAYS, ("a", "b", "80", "h"), live).origin_text() == \
        " (Gateway shop/gw)"
    json_file = Origin("Gateway", "shop", "gw", "gw.json", 1)
    assert json_file.reference(5) == "gw.json"  # istioctl gives JSON files no line


def test_json_and_yaml_output_like_istioctl() -> None:
    m = Message(msg.SERVICE_ENTRY_ADDRESSES_REQUIRED, (),
                Origin("ServiceEntry", "shop", "db", "se.yaml", 2), 9)
    text = render([m], "json")
    assert text.startswith('[\n\t{\n\t\t"code": "IST0134",')
    assert json.loads(text) == [{
        "code": "IST0134", "level": "Warning", "origin": "ServiceEntry shop/db",
        "reference": "se.yaml:9",
        "message": "ServiceEntry addresses are required for this protocol.",
        "documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0134/"
                            "?ref=istioctl-analyze"}]
    assert yaml.safe_load(render([m], "yaml")) == json.loads(text)
    assert render([], "json") == "[]" and render([], "yaml") == "[]"
    assert render([m], "log", color=True).startswith("\033[33mWarning\033[0m [IST0134]")


def test_sorted_by_level_code_resource_and_deduplicated() -> None:
    a = Origin("VirtualService", "b", "x")
    b = Origin("VirtualService", "a", "y")
    info = Message(msg.PORT_NAME_NOT_UNDER_NAMING_CONVENTION, ("", 80, "80"), a)
    e1 = Message(msg.REFERENCED_RESOURCE_NOT_FOUND, ("host", "h"), b)
    e2 = Message(msg.REFERENCED_RESOURCE_NOT_FOUND, ("host", "h"), a)
    assert sorted_deduped([info, e1, e2, e1]) == [e2, e1, info]


def test_levels() -> None:
    assert parse_level("warning") is msg.WARNING
    assert msg.ERROR.at_least(msg.WARNING) and not msg.INFO.at_least(msg.WARNING)
