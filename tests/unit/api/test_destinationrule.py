"""DestinationRule model: Istio field names, Istio's validation rules, warnings and merging."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshpilot.api.destinationrule import (
    DestinationRule,
    TrafficPolicy,
    effective_subset_policy,
)
from meshpilot.api.errors import Issue
from meshpilot.api.schema import parse_model

SEED = Path("/work/shared/seed/000_9036cf77a6ffa7a6.txt")
NS = "traffic-demo"


def parse(spec: dict[str, Any]) -> tuple[DestinationRule | None, list[Issue]]:
    return parse_model(DestinationRule, spec, prefix=("spec",), context={"namespace": NS})


def ok(spec: dict[str, Any]) -> DestinationRule:
    model, issues = parse(spec)
    assert issues == [], [i.format() for i in issues]
    assert model is not None
    return model


def error(spec: dict[str, Any]) -> Issue:
    """The single error `spec` produces."""
    model, issues = parse(spec)
    assert model is None
    assert len(issues) == 1, [i.format() for i in issues]
    return issues[0]


def with_policy(policy: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"host": "reviews", "trafficPolicy": policy, **extra}


def seed_destination_rules() -> list[dict[str, Any]]:
    text = SEED.read_text(encoding="utf-8")
    docs: list[dict[str, Any]] = []
    for block in re.findall(r"<< EOF\n(.*?)\nEOF", text, flags=re.S):
        docs += [d for d in yaml.safe_load_all(block) if isinstance(d, dict)]
    return [d for d in docs if d.get("kind") == "DestinationRule"]


# --- parsing ---------------------------------------------------------------------------------


def test_seed_destination_rules_parse_without_errors() -> None:
    rules = seed_destination_rules()
    assert [r["metadata"]["name"] for r in rules] == [
        "sample-app-subsets",
        "sample-app-circuit-breaker",
    ]
    for rule in rules:
        model = ok(rule["spec"])
        assert model.to_json() == rule["spec"]
    assert ok(rules[0]["spec"]).warnings() == []
    breaker = ok(rules[1]["spec"])
    # consecutiveGatewayErrors 3 next to consecutive5xxErrors 3 can never trigger first
    [warning] = breaker.warnings()
    assert warning.field_path == "trafficPolicy.outlierDetection.consecutiveGatewayErrors"
    assert "no effect" in warning.message
    assert breaker.traffic_policy is not None
    assert breaker.traffic_policy.connection_pool is not None
    http = breaker.traffic_policy.connection_pool.http
    assert http is not None and http.http1_max_pending_requests == 5
    od = breaker.traffic_policy.outlier_detection
    assert od is not None and od.consecutive_5xx_errors == 3


FULL: dict[str, Any] = {
    "host": "*.reviews.prod.svc.cluster.local",
    "exportTo": ["."],
    "workloadSelector": {"matchLabels": {"app": "ratings"}},
    "trafficPolicy": {
        "loadBalancer": {
            "consistentHash": {
                "httpCookie": {
                    "name": "user",
                    "path": "/",
                    "ttl": "0s",
                    "attributes": [{"name": "SameSite", "value": "Strict"}, {"name": "Secure"}],
                },
                "ringHash": {"minimumRingSize": 2048},
            },
            "localityLbSetting": {
                "distribute": [
                    {
                        "from": "us-west/zone1/*",
                        "to": {"us-west/zone1/*": 80, "us-west/zone2/*": 20},
                    }
                ],
                "failoverPriority": ["topology.istio.io/network"],
                "enabled": True,
            },
            "warmup": {"duration": "60s", "minimumPercent": 20.0, "aggression": 1.5},
        },
        "connectionPool": {
            "tcp": {
                "maxConnections": 100,
                "connectTimeout": "30ms",
                "tcpKeepalive": {"probes": 3, "time": "7200s", "interval": "75s"},
                "maxConnectionDuration": "1h",
                "idleTimeout": "0s",
            },
            "http": {
                "http1MaxPendingRequests": 10,
                "http2MaxRequests": 1000,
                "maxRequestsPerConnection": 10,
                "maxRetries": 3,
                "idleTimeout": "30s",
                "h2UpgradePolicy": "DO_NOT_UPGRADE",
                "useClientProtocol": True,
                "maxConcurrentStreams": 100,
                "http2KeepAlive": {"interval": "10s", "timeout": "5s"},
            },
        },
        "outlierDetection": {
            "splitExternalLocalOriginErrors": True,
            "consecutiveLocalOriginFailures": 4,
            "consecutiveGatewayErrors": 3,
            "consecutive5xxErrors": 7,
            "interval": "5m",
            "baseEjectionTime": "15m",
            "maxEjectionPercent": 100,
            "minHealthPercent": 50,
            "outlierDetectionHttpErrorCodes": [500, 503],
        },
        "tls": {
            "mode": "MUTUAL",
            "clientCertificate": "/etc/certs/myclientcert.pem",
            "privateKey": "/etc/certs/client_private_key.pem",
            "caCertificates": "/etc/certs/rootcacerts.pem",
            "subjectAltNames": ["reviews.example.com"],
            "sni": "reviews.example.com",
            "insecureSkipVerify": False,
            "caCrl": "/etc/certs/crl.pem",
        },
        "portLevelSettings": [
            {
                "port": {"number": 80},
                "loadBalancer": {
                    "consistentHash": {"httpHeaderName": "x-user", "maglev": {"tableSize": 65537}},
                    "zoneAwareLbSetting": {
                        "enabled": True,
                        "failover": [{"from": "us-east", "to": "eu-west"}],
                        "failoverPriority": ["topology.istio.io/network"],
                        "minClusterSize": 6,
                    },
                    "warmupDurationSecs": "30s",
                },
                "connectionPool": {"tcp": {"maxConnections": 5}},
                "outlierDetection": {"consecutiveErrors": 5},
                "tls": {
                    "mode": "SIMPLE",
                    "credentialName": "client-credential",
                    "subjectAltNames": ["a.example.com"],
                },
            },
            {
                "port": {"number": 9080},
                "loadBalancer": {
                    "consistentHash": {"useSourceIp": True, "minimumRingSize": 1024},
                    "localityLbSetting": {
                        "failover": [{"from": "us-east", "to": "eu-west"}],
                    },
                },
                "outlierDetection": {"consecutive5xxErrors": 0},
            },
        ],
        "tunnel": {"protocol": "CONNECT", "targetHost": "egress.example.com", "targetPort": 8443},
        "retryBudget": {"percent": 25.0, "minRetryConcurrency": 5, "budgetInterval": "0ms"},
    },
    "subsets": [
        {
            "name": "v1",
            "labels": {"version": "v1", "app.kubernetes.io/name": "reviews"},
            "trafficPolicy": {
                "loadBalancer": {
                    "consistentHash": {"httpQueryParameterName": "user"},
                },
                "proxyProtocol": {"version": "V2"},
            },
        },
        {
            "name": "V2",
            "trafficPolicy": {
                "loadBalancer": {"simple": "LEAST_CONN"},
                "tls": {"mode": "ISTIO_MUTUAL", "sni": "v2.reviews"},
            },
        },
    ],
}


def test_every_field_parses_and_round_trips() -> None:
    model = ok(FULL)
    assert model.to_json() == FULL
    assert model.traffic_policy is not None
    assert model.traffic_policy.outlier_detection is not None
    assert model.traffic_policy.outlier_detection.consecutive_5xx_errors == 7


def test_json_names_follow_the_proto() -> None:
    model = ok(FULL)
    dumped = model.to_json()
    http = dumped["trafficPolicy"]["connectionPool"]["http"]
    assert {"http1MaxPendingRequests", "http2MaxRequests", "http2KeepAlive"} <= set(http)
    od = dumped["trafficPolicy"]["outlierDetection"]
    assert "consecutive5xxErrors" in od
    assert "from" in dumped["trafficPolicy"]["loadBalancer"]["localityLbSetting"]["distribute"][0]


def test_unknown_field_suggests_the_istio_name() -> None:
    issue = error(with_policy({"connectionPool": {"http": {"http1MaxPendingRequest": 1}}}))
    assert issue.field_path == "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequest"
    assert "unknown field" in issue.message
    assert issue.hint == "did you mean 'http1MaxPendingRequests'?"


def test_model_is_strict_about_types() -> None:
    issue = error(with_policy({"connectionPool": {"tcp": {"maxConnections": "10"}}}))
    assert issue.field_path == "spec.trafficPolicy.connectionPool.tcp.maxConnections"


# --- validation rules --------------------------------------------------------------------------

LB = "spec.trafficPolicy.loadBalancer"
CP = "spec.trafficPolicy.connectionPool"
OD = "spec.trafficPolicy.outlierDetection"
TLS = "spec.trafficPolicy.tls"

CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # host
    ("host missing", {}, "spec.host", "required field is missing"),
    ("host empty", {"host": ""}, "spec.host", "empty domain"),
    ("host bad label", {"host": "rev_iews.prod"}, "spec.host", "'rev_iews'"),
    ("host numeric tld", {"host": "10.0.0.1"}, "spec.host", "all-numeric"),
    ("host wildcard inside", {"host": "foo.*.com"}, "spec.host", "'*'"),
    ("host too long", {"host": "a." * 127 + "com"}, "spec.host", "too long"),
    # subsets
    ("subset name missing", {"host": "r", "subsets": [{"labels": {"a": "b"}}]},
     "spec.subsets[0].name", "required field is missing"),
    ("subset name empty", {"host": "r", "subsets": [{"name": ""}]},
     "spec.subsets[0].name", "subset name cannot be empty"),
    ("subset name not dns label", {"host": "r", "subsets": [{"name": "v1.0"}]},
     "spec.subsets[0].name", "DNS-1123 label"),
    ("subset duplicate", {"host": "r", "subsets": [{"name": "v1"}, {"name": "v1"}]},
     "spec.subsets[1].name", "duplicate subset name 'v1'"),
    ("subset label key", {"host": "r", "subsets": [{"name": "v1", "labels": {"bad key": "x"}}]},
     "spec.subsets[0].labels[bad key]", "invalid label key"),
    ("subset label value", {"host": "r", "subsets": [{"name": "v1", "labels": {"a": "x y"}}]},
     "spec.subsets[0].labels.a", "invalid label value"),
    ("subset policy empty", {"host": "r", "subsets": [{"name": "v1", "trafficPolicy": {}}]},
     "spec.subsets[0].trafficPolicy", "at least one field"),
    # exportTo / workloadSelector
    ("exportTo tilde", {"host": "r", "exportTo": ["~"]}, "spec.exportTo[0]", "'~'"),
    ("exportTo duplicate", {"host": "r", "exportTo": [".", NS]}, "spec.exportTo[1]", "duplicate"),
    ("exportTo star mix", {"host": "r", "exportTo": ["*", "a"]}, "spec.exportTo", "combined"),
    ("selector exports beyond ns",
     {"host": "r", "workloadSelector": {"matchLabels": {"a": "b"}}, "exportTo": ["other"]},
     "spec.exportTo", "beyond its own namespace"),
    ("selector multiple exports",
     {"host": "r", "workloadSelector": {"matchLabels": {"a": "b"}}, "exportTo": [".", "other"]},
     "spec.exportTo", "multiple exportTo"),
    ("selector wildcard", {"host": "r", "workloadSelector": {"matchLabels": {"a": "b*"}}},
     "spec.workloadSelector.matchLabels.a", "wildcard is not supported"),
    ("selector empty key", {"host": "r", "workloadSelector": {"matchLabels": {"": "b"}}},
     "spec.workloadSelector.matchLabels", "empty label key"),
    # traffic policy
    ("policy empty", with_policy({}), "spec.trafficPolicy", "at least one field"),
    ("policy only empty port list", with_policy({"portLevelSettings": []}), "spec.trafficPolicy",
     "at least one field"),
    ("tunnel and proxyProtocol",
     with_policy({"tunnel": {"targetHost": "a.b", "targetPort": 1},
                  "proxyProtocol": {"version": "V1"}}),
     "spec.trafficPolicy.proxyProtocol", "must not be set together"),
    ("tunnel protocol", with_policy({"tunnel": {"protocol": "GET", "targetHost": "a.b",
                                                "targetPort": 1}}),
     "spec.trafficPolicy.tunnel.protocol", "not supported"),
    ("tunnel host", with_policy({"tunnel": {"targetHost": "*.b", "targetPort": 1}}),
     "spec.trafficPolicy.tunnel.targetHost", "valid FQDN or IP"),
    ("tunnel host missing", with_policy({"tunnel": {"targetPort": 1}}),
     "spec.trafficPolicy.tunnel.targetHost", "required field is missing"),
    ("tunnel port", with_policy({"tunnel": {"targetHost": "10.0.0.1", "targetPort": 0}}),
     "spec.trafficPolicy.tunnel.targetPort", "1..65535"),
    ("proxy protocol version", with_policy({"proxyProtocol": {"version": "V3"}}),
     "spec.trafficPolicy.proxyProtocol.version", "invalid value"),
    ("retry budget percent", with_policy({"retryBudget": {"percent": 101}}),
     "spec.trafficPolicy.retryBudget.percent", "less than or equal to 100"),
    ("port level needs port", with_policy({"portLevelSettings": [{"tls": {"mode": "SIMPLE"}}]}),
     "spec.trafficPolicy.portLevelSettings[0].port", "need a port"),
    ("port level needs a field", with_policy({"portLevelSettings": [{"port": {"number": 80}}]}),
     "spec.trafficPolicy.portLevelSettings[0]", "at least one field"),
    ("port level too many",
     with_policy({"portLevelSettings": [{"port": {"number": 1 + i % 65535},
                                         "tls": {"mode": "DISABLE"}} for i in range(4097)]}),
     "spec.trafficPolicy.portLevelSettings", "at most 4096"),
    # connection pool
    ("pool empty", with_policy({"connectionPool": {}}), CP, "at least one field"),
    ("max connections negative", with_policy({"connectionPool": {"tcp": {"maxConnections": -1}}}),
     f"{CP}.tcp.maxConnections", "non-negative"),
    ("max connections int32", with_policy({"connectionPool": {"tcp": {"maxConnections": 2**31}}}),
     f"{CP}.tcp.maxConnections", "less than or equal to 2147483647"),
    ("pending negative",
     with_policy({"connectionPool": {"http": {"http1MaxPendingRequests": -1}}}),
     f"{CP}.http.http1MaxPendingRequests", "non-negative"),
    ("http2 max negative", with_policy({"connectionPool": {"http": {"http2MaxRequests": -5}}}),
     f"{CP}.http.http2MaxRequests", "non-negative"),
    ("per connection negative",
     with_policy({"connectionPool": {"http": {"maxRequestsPerConnection": -1}}}),
     f"{CP}.http.maxRequestsPerConnection", "non-negative"),
    ("retries negative", with_policy({"connectionPool": {"http": {"maxRetries": -1}}}),
     f"{CP}.http.maxRetries", "non-negative"),
    ("streams negative", with_policy({"connectionPool": {"http": {"maxConcurrentStreams": -1}}}),
     f"{CP}.http.maxConcurrentStreams", "non-negative"),
    ("upgrade with client protocol",
     with_policy({"connectionPool": {"http": {"h2UpgradePolicy": "UPGRADE",
                                              "useClientProtocol": True}}}),
     f"{CP}.http.useClientProtocol", "must not be true"),
    ("h2 policy enum", with_policy({"connectionPool": {"http": {"h2UpgradePolicy": "ALWAYS"}}}),
     f"{CP}.http.h2UpgradePolicy", "invalid value"),
    ("http idle timeout 0s", with_policy({"connectionPool": {"http": {"idleTimeout": "0s"}}}),
     f"{CP}.http.idleTimeout", "at least 1ms"),
    ("connect timeout sub-ms",
     with_policy({"connectionPool": {"tcp": {"connectTimeout": "1500us"}}}),
     f"{CP}.tcp.connectTimeout", "whole number of milliseconds"),
    ("connect timeout syntax", with_policy({"connectionPool": {"tcp": {"connectTimeout": "5"}}}),
     f"{CP}.tcp.connectTimeout", "invalid duration"),
    ("max connection duration",
     with_policy({"connectionPool": {"tcp": {"maxConnectionDuration": "0s"}}}),
     f"{CP}.tcp.maxConnectionDuration", "at least 1ms"),
    ("tcp idle timeout sub-ms",
     with_policy({"connectionPool": {"tcp": {"idleTimeout": "1.5ms"}}}),
     f"{CP}.tcp.idleTimeout", "whole number of milliseconds"),
    ("keepalive time", with_policy({"connectionPool": {"tcp": {"tcpKeepalive": {"time": "0s"}}}}),
     f"{CP}.tcp.tcpKeepalive.time", "at least 1ms"),
    ("keepalive interval",
     with_policy({"connectionPool": {"tcp": {"tcpKeepalive": {"interval": "0.1ms"}}}}),
     f"{CP}.tcp.tcpKeepalive.interval", "at least 1ms"),
    ("keepalive probes", with_policy({"connectionPool": {"tcp": {"tcpKeepalive": {"probes": -1}}}}),
     f"{CP}.tcp.tcpKeepalive.probes", "greater than or equal to 0"),
    ("h2 keepalive interval required",
     with_policy({"connectionPool": {"http": {"http2KeepAlive": {"timeout": "1s"}}}}),
     f"{CP}.http.http2KeepAlive.interval", "interval is required"),
    ("h2 keepalive timeout required",
     with_policy({"connectionPool": {"http": {"http2KeepAlive": {"interval": "1s"}}}}),
     f"{CP}.http.http2KeepAlive.timeout", "timeout is required"),
    ("h2 keepalive timeout duration",
     with_policy({"connectionPool": {"http": {"http2KeepAlive": {"interval": "1s",
                                                                 "timeout": "0s"}}}}),
     f"{CP}.http.http2KeepAlive.timeout", "at least 1ms"),
    # outlier detection
    ("local origin without split",
     with_policy({"outlierDetection": {"consecutiveLocalOriginFailures": 3}}),
     f"{OD}.consecutiveLocalOriginFailures", "splitExternalLocalOriginErrors is false"),
    ("interval", with_policy({"outlierDetection": {"interval": "0s"}}), f"{OD}.interval",
     "at least 1ms"),
    ("base ejection", with_policy({"outlierDetection": {"baseEjectionTime": "100us"}}),
     f"{OD}.baseEjectionTime", "at least 1ms"),
    ("max ejection percent", with_policy({"outlierDetection": {"maxEjectionPercent": 101}}),
     f"{OD}.maxEjectionPercent", "0..100"),
    ("min health percent", with_policy({"outlierDetection": {"minHealthPercent": -1}}),
     f"{OD}.minHealthPercent", "0..100"),
    ("5xx uint32", with_policy({"outlierDetection": {"consecutive5xxErrors": -1}}),
     f"{OD}.consecutive5xxErrors", "greater than or equal to 0"),
    ("error codes range", with_policy({"outlierDetection": {"outlierDetectionHttpErrorCodes":
                                                            [500, 600]}}),
     f"{OD}.outlierDetectionHttpErrorCodes[1]", "less than or equal to 599"),
    # load balancer
    ("simple and consistentHash",
     with_policy({"loadBalancer": {"simple": "RANDOM", "consistentHash": {"useSourceIp": True}}}),
     f"{LB}.consistentHash", "only one of simple or consistentHash"),
    ("simple enum", with_policy({"loadBalancer": {"simple": "WEIGHTED"}}), f"{LB}.simple",
     "invalid value"),
    ("two hash keys",
     with_policy({"loadBalancer": {"consistentHash": {"httpHeaderName": "x",
                                                      "useSourceIp": True}}}),
     f"{LB}.consistentHash.useSourceIp", "consistentHash keys"),
    ("two hash algorithms",
     with_policy({"loadBalancer": {"consistentHash": {"ringHash": {},
                                                      "maglev": {"tableSize": 7}}}}),
     f"{LB}.consistentHash.maglev", "ringHash or maglev"),
    ("deprecated ring size with algorithm",
     with_policy({"loadBalancer": {"consistentHash": {"minimumRingSize": 10, "ringHash": {}}}}),
     f"{LB}.consistentHash.minimumRingSize", "only one of minimumRingSize"),
    ("cookie name missing",
     with_policy({"loadBalancer": {"consistentHash": {"httpCookie": {"ttl": "10s"}}}}),
     f"{LB}.consistentHash.httpCookie.name", "required field is missing"),
    ("cookie name empty",
     with_policy({"loadBalancer": {"consistentHash": {"httpCookie": {"name": ""}}}}),
     f"{LB}.consistentHash.httpCookie.name", "name required"),
    ("cookie attribute empty",
     with_policy({"loadBalancer": {"consistentHash": {"httpCookie": {
         "name": "c", "attributes": [{"name": ""}]}}}}),
     f"{LB}.consistentHash.httpCookie.attributes[0].name", "cannot be empty"),
    ("cookie attribute duplicate",
     with_policy({"loadBalancer": {"consistentHash": {"httpCookie": {
         "name": "c", "attributes": [{"name": "Secure"}, {"name": "Secure"}]}}}}),
     f"{LB}.consistentHash.httpCookie.attributes[1].name", "duplicate cookie attribute"),
    ("maglev size missing", with_policy({"loadBalancer": {"consistentHash": {"maglev": {}}}}),
     f"{LB}.consistentHash.maglev.tableSize", "must be set"),
    ("maglev size too big",
     with_policy({"loadBalancer": {"consistentHash": {"maglev": {"tableSize": 5000011}}}}),
     f"{LB}.consistentHash.maglev.tableSize", "less than 5000011"),
    ("maglev size not prime",
     with_policy({"loadBalancer": {"consistentHash": {"maglev": {"tableSize": 65536}}}}),
     f"{LB}.consistentHash.maglev.tableSize", "prime"),
    ("locality and zone aware",
     with_policy({"loadBalancer": {"localityLbSetting": {}, "zoneAwareLbSetting": {}}}),
     f"{LB}.zoneAwareLbSetting", "only one of localityLbSetting and zoneAwareLbSetting"),
    ("distribute and failover",
     with_policy({"loadBalancer": {"localityLbSetting": {
         "distribute": [{"from": "a", "to": {"b": 100}}],
         "failover": [{"from": "a", "to": "b"}]}}}),
     f"{LB}.localityLbSetting.failover", "cannot be set together"),
    ("failover with topology priority",
     with_policy({"loadBalancer": {"localityLbSetting": {
         "failover": [{"from": "a", "to": "b"}],
         "failoverPriority": ["x", "topology.kubernetes.io/zone"]}}}),
     f"{LB}.localityLbSetting.failoverPriority[1]", "topology label"),
    ("locality weight range",
     with_policy({"loadBalancer": {"localityLbSetting": {
         "distribute": [{"from": "a", "to": {"b": 0, "c": 100}}]}}}),
     f"{LB}.localityLbSetting.distribute[0].to.b", "1..100"),
    ("locality weight total",
     with_policy({"loadBalancer": {"localityLbSetting": {
         "distribute": [{"from": "a", "to": {"b": 30, "c": 30}}]}}}),
     f"{LB}.localityLbSetting.distribute[0].to", "add up to 60"),
    ("locality wildcard position",
     with_policy({"loadBalancer": {"localityLbSetting": {
         "distribute": [{"from": "a/*/c", "to": {"b": 100}}]}}}),
     f"{LB}.localityLbSetting.distribute", "wildcard"),
    ("locality overlap",
     with_policy({"loadBalancer": {"localityLbSetting": {
         "distribute": [{"from": "a", "to": {"b": 50, "b/z1": 50}}]}}}),
     f"{LB}.localityLbSetting.distribute[0].to", "overlaps"),
    ("locality empty part",
     with_policy({"loadBalancer": {"localityLbSetting": {
         "distribute": [{"from": "a//c", "to": {"b": 100}}]}}}),
     f"{LB}.localityLbSetting.distribute", "empty region/zone/subzone"),
    ("failover same region",
     with_policy({"loadBalancer": {"localityLbSetting": {"failover": [{"from": "a", "to": "a"}]}},
                  "outlierDetection": {}}),
     f"{LB}.localityLbSetting.failover[0].to", "different"),
    ("failover zone",
     with_policy({"loadBalancer": {"localityLbSetting": {"failover": [{"from": "a/z", "to": "b"}]}},
                  "outlierDetection": {}}),
     f"{LB}.localityLbSetting.failover[0].from", "regions only"),
    ("failover wildcard",
     with_policy({"loadBalancer": {"localityLbSetting": {"failover": [{"from": "a", "to": "*"}]}},
                  "outlierDetection": {}}),
     f"{LB}.localityLbSetting.failover[0].to", "wildcard"),
    ("zone aware topology priority",
     with_policy({"loadBalancer": {"zoneAwareLbSetting": {
         "failoverPriority": ["topology.kubernetes.io/region"]}}}),
     f"{LB}.zoneAwareLbSetting.failoverPriority[0]", "topology label"),
    ("zone aware failover zone",
     with_policy({"loadBalancer": {"zoneAwareLbSetting": {"failover": [{"from": "a",
                                                                         "to": "b/z"}]}},
                  "outlierDetection": {}}),
     f"{LB}.zoneAwareLbSetting.failover[0].to", "regions only"),
    ("zone aware min cluster size",
     with_policy({"loadBalancer": {"zoneAwareLbSetting": {"minClusterSize": 0}}}),
     f"{LB}.zoneAwareLbSetting.minClusterSize", "greater than or equal to 1"),
    ("warmup and warmupDurationSecs",
     with_policy({"loadBalancer": {"warmupDurationSecs": "10s", "warmup": {"duration": "10s"}}}),
     f"{LB}.warmup", "warmupDurationSecs or warmup"),
    ("warmupDurationSecs minimum", with_policy({"loadBalancer": {"warmupDurationSecs": "0s"}}),
     f"{LB}.warmupDurationSecs", "at least 1ms"),
    ("warmup duration required", with_policy({"loadBalancer": {"warmup": {"aggression": 2.0}}}),
     f"{LB}.warmup.duration", "required field is missing"),
    ("warmup duration minimum", with_policy({"loadBalancer": {"warmup": {"duration": "0s"}}}),
     f"{LB}.warmup.duration", "at least 1ms"),
    ("warmup minimum percent",
     with_policy({"loadBalancer": {"warmup": {"duration": "1s", "minimumPercent": 150}}}),
     f"{LB}.warmup.minimumPercent", "less than or equal to 100"),
    ("warmup aggression zero",
     with_policy({"loadBalancer": {"warmup": {"duration": "1s", "aggression": 0}}}),
     f"{LB}.warmup.aggression", "greater than 0"),
    # TLS
    ("tls mode enum", with_policy({"tls": {"mode": "STRICT"}}), f"{TLS}.mode", "invalid value"),
    ("mutual needs cert", with_policy({"tls": {"mode": "MUTUAL", "privateKey": "/k"}}),
     f"{TLS}.clientCertificate", "clientCertificate is required"),
    ("mutual needs key", with_policy({"tls": {"mode": "MUTUAL", "clientCertificate": "/c"}}),
     f"{TLS}.privateKey", "privateKey is required"),
    ("credentialName with files",
     with_policy({"tls": {"mode": "SIMPLE", "credentialName": "c", "caCertificates": "/ca"}}),
     f"{TLS}.caCertificates", "together with credentialName"),
    ("credentialName with crl",
     with_policy({"tls": {"mode": "MUTUAL", "credentialName": "c", "caCrl": "/crl"}}),
     f"{TLS}.caCrl", "together with credentialName"),
    ("simple insecure with ca",
     with_policy({"tls": {"mode": "SIMPLE", "insecureSkipVerify": True, "caCertificates": "/ca"}}),
     f"{TLS}.caCertificates", "insecureSkipVerify is true"),
    ("simple insecure with credential",
     with_policy({"tls": {"mode": "SIMPLE", "insecureSkipVerify": True, "credentialName": "c"}}),
     f"{TLS}.credentialName", "insecureSkipVerify is true"),
    ("mutual insecure with sans",
     with_policy({"tls": {"mode": "MUTUAL", "insecureSkipVerify": True, "credentialName": "c",
                          "subjectAltNames": ["a"]}}),
     f"{TLS}.subjectAltNames", "insecureSkipVerify is true"),
    ("configmap credential other namespace",
     with_policy({"tls": {"mode": "SIMPLE", "credentialName": "configmap://other/ca"}}),
     f"{TLS}.credentialName", "own namespace"),
    ("configmap credential malformed",
     with_policy({"tls": {"mode": "SIMPLE", "credentialName": "configmap://ca"}}),
     f"{TLS}.credentialName", "configmap://<namespace>/<name>"),
    # rules apply inside subsets and port-level settings as well
    ("subset policy rule", {"host": "r", "subsets": [{"name": "v1", "trafficPolicy": {
        "connectionPool": {"tcp": {"maxConnections": -1}}}}]},
     "spec.subsets[0].trafficPolicy.connectionPool.tcp.maxConnections", "non-negative"),
    ("port level rule", with_policy({"portLevelSettings": [
        {"port": {"number": 80}, "tls": {"mode": "MUTUAL", "privateKey": "/k"}}]}),
     "spec.trafficPolicy.portLevelSettings[0].tls.clientCertificate", "required"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [pytest.param(spec, path, fragment, id=name) for name, spec, path, fragment in CASES],
)
def test_validation_rule(spec: dict[str, Any], path: str, fragment: str) -> None:
    issue = error(spec)
    assert issue.field_path == path
    assert fragment in issue.message
    assert issue.severity == "error"


ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("wildcard host", {"host": "*"}),
    ("partial wildcard first label", {"host": "*-reviews.example.com"}),
    ("upper case host and subset", {"host": "Reviews.Prod", "subsets": [{"name": "V1"}]}),
    ("trailing dot", {"host": "reviews.prod."}),
    ("subset without labels", {"host": "r", "subsets": [{"name": "all"}]}),
    ("long label value (Istio does not cap it)",
     {"host": "r", "subsets": [{"name": "v1", "labels": {"a": "x" * 80}}]}),
    ("tcp idle timeout 0s disables it", with_policy({"connectionPool": {"tcp": {"idleTimeout":
                                                                                "0s"}}})),
    ("cookie ttl 0s", with_policy({"loadBalancer": {"consistentHash": {
        "httpCookie": {"name": "u", "ttl": "0s"}}}})),
    ("budget interval 0ms", with_policy({"retryBudget": {"budgetInterval": "0ms"}})),
    ("maglev small prime", with_policy({"loadBalancer": {"consistentHash": {"maglev":
                                                                             {"tableSize": 3}}}})),
    ("port 0 accepted like Istio", with_policy({"portLevelSettings": [
        {"port": {}, "tls": {"mode": "ISTIO_MUTUAL"}}]})),
    ("mutual with credentialName", with_policy({"tls": {"mode": "MUTUAL", "credentialName": "c"}})),
    ("configmap credential own namespace",
     with_policy({"tls": {"mode": "SIMPLE", "credentialName": f"configmap://{NS}/ca"}})),
    ("selector exporting to own namespace",
     {"host": "r", "workloadSelector": {"matchLabels": {"a": "b"}}, "exportTo": [NS]}),
    ("useSourceIp false still selects the key", with_policy({"loadBalancer": {
        "consistentHash": {"useSourceIp": False}}})),
    ("tunnel to ip", with_policy({"tunnel": {"targetHost": "fd00::1", "targetPort": 443}})),
    ("empty tls block counts as a field", with_policy({"tls": {}})),
]  # fmt: skip


@pytest.mark.parametrize(("spec"), [pytest.param(s, id=n) for n, s in ACCEPTED])
def test_accepted_like_istio(spec: dict[str, Any]) -> None:
    ok(spec)


def test_errors_in_separate_blocks_are_all_reported() -> None:
    _, issues = parse(
        with_policy(
            {
                "connectionPool": {"tcp": {"maxConnections": -1}},
                "outlierDetection": {"maxEjectionPercent": 200},
            }
        )
    )
    assert {i.field_path for i in issues} == {
        f"{CP}.tcp.maxConnections",
        f"{OD}.maxEjectionPercent",
    }


def test_errors_carry_hints() -> None:
    issue = error(with_policy({"tls": {"mode": "MUTUAL", "privateKey": "/k"}}))
    assert issue.hint is not None and "credentialName" in issue.hint


# --- warnings ---------------------------------------------------------------------------------


def warnings_of(spec: dict[str, Any]) -> dict[str, str]:
    model = ok(spec)
    found = model.warnings()
    assert all(w.severity == "warning" for w in found)
    return {w.field_path: w.message for w in found}


def test_full_document_warnings() -> None:
    found = warnings_of(FULL)
    assert set(found) == {
        "trafficPolicy.portLevelSettings[0].outlierDetection.consecutiveErrors",
        "trafficPolicy.portLevelSettings[1].loadBalancer.consistentHash.minimumRingSize",
        "subsets[1].trafficPolicy.loadBalancer.simple",
    }


def test_deprecated_consecutive_errors_warns() -> None:
    found = warnings_of(with_policy({"outlierDetection": {"consecutiveErrors": 5}}))
    assert "deprecated" in found["trafficPolicy.outlierDetection.consecutiveErrors"]


def test_gateway_errors_not_below_5xx_have_no_effect() -> None:
    found = warnings_of(
        with_policy(
            {"outlierDetection": {"consecutiveGatewayErrors": 5, "consecutive5xxErrors": 3}}
        )
    )
    assert "no effect" in found["trafficPolicy.outlierDetection.consecutiveGatewayErrors"]
    found = warnings_of(with_policy({"outlierDetection": {"consecutiveGatewayErrors": 5}}))
    assert "the default" in found["trafficPolicy.outlierDetection.consecutiveGatewayErrors"]
    assert warnings_of(with_policy({"outlierDetection": {"consecutiveGatewayErrors": 3}})) == {}
    both = {"consecutiveGatewayErrors": 5, "consecutive5xxErrors": 0}
    assert warnings_of(with_policy({"outlierDetection": both})) == {}


def test_failover_without_outlier_detection_warns() -> None:
    policy = {"loadBalancer": {"localityLbSetting": {"failover": [{"from": "a", "to": "b"}]}}}
    found = warnings_of(with_policy(policy))
    assert "outlier detection" in found["trafficPolicy.loadBalancer.localityLbSetting"]
    assert warnings_of(with_policy({**policy, "outlierDetection": {}})) == {}
    zone = {"loadBalancer": {"zoneAwareLbSetting": {"failoverPriority": ["x"]}}}
    assert "trafficPolicy.loadBalancer.zoneAwareLbSetting" in warnings_of(with_policy(zone))


def test_workload_selector_without_labels_warns() -> None:
    found = warnings_of({"host": "r", "workloadSelector": {}})
    assert found == {"workloadSelector": "workload selector specified without labels"}


def test_tls_without_ca_warns_at_dr_and_port_level_only() -> None:
    spec = with_policy(
        {
            "tls": {"mode": "SIMPLE"},
            "portLevelSettings": [
                {"port": {"number": 443}, "tls": {"mode": "MUTUAL", "credentialName": "c"}}
            ],
        },
        subsets=[{"name": "v1", "trafficPolicy": {"tls": {"mode": "SIMPLE"}}}],
    )
    found = warnings_of(spec)
    assert set(found) == {
        "trafficPolicy.tls.caCertificates",
        "trafficPolicy.portLevelSettings[0].tls.caCertificates",
    }
    # credentialName counts as a CA source only when the rule has a workload selector
    spec["workloadSelector"] = {"matchLabels": {"app": "a"}}
    assert set(warnings_of(spec)) == {"trafficPolicy.tls.caCertificates"}


def test_ignored_tls_fields_warn() -> None:
    found = warnings_of(
        with_policy({"tls": {"mode": "ISTIO_MUTUAL", "caCertificates": "/ca", "sni": "x"}})
    )
    assert found == {
        "trafficPolicy.tls.caCertificates": "caCertificates is ignored in ISTIO_MUTUAL mode, "
        "which uses Istio's own certificates"
    }
    found = warnings_of(with_policy({"tls": {"sni": "x"}}))
    assert "mode is DISABLE" in found["trafficPolicy.tls.sni"]


def test_port_level_duplicates_and_unmatchable_ports_warn() -> None:
    tls = {"mode": "ISTIO_MUTUAL"}
    found = warnings_of(
        with_policy(
            {
                "portLevelSettings": [
                    {"port": {"number": 80}, "tls": tls},
                    {"port": {"number": 80}, "tls": tls},
                    {"port": {"number": 70000}, "tls": tls},
                ]
            }
        )
    )
    assert "only the first entry is used" in found["trafficPolicy.portLevelSettings[1].port.number"]
    assert "never matches" in found["trafficPolicy.portLevelSettings[2].port.number"]


def test_least_conn_is_deprecated() -> None:
    found = warnings_of(with_policy({"loadBalancer": {"simple": "LEAST_CONN"}}))
    assert found == {"trafficPolicy.loadBalancer.simple": "LEAST_CONN is deprecated"}


# --- effective policy ------------------------------------------------------------------------

MERGE: dict[str, Any] = {
    "host": "reviews",
    "trafficPolicy": {
        "connectionPool": {
            "tcp": {"maxConnections": 10},
            "http": {"http1MaxPendingRequests": 5, "maxRequestsPerConnection": 2},
        },
        "outlierDetection": {"consecutive5xxErrors": 3},
        "loadBalancer": {"simple": "ROUND_ROBIN"},
        "retryBudget": {"percent": 30.0},
        "portLevelSettings": [
            {"port": {"number": 8080}, "loadBalancer": {"simple": "RANDOM"}},
            {"port": {"number": 8080}, "loadBalancer": {"simple": "LEAST_REQUEST"}},
        ],
    },
    "subsets": [
        {"name": "v1"},
        {
            "name": "v2",
            "trafficPolicy": {
                "connectionPool": {"tcp": {"maxConnections": 5}},
                "tunnel": {"targetHost": "proxy.example.com", "targetPort": 3128},
            },
        },
        {
            "name": "v3",
            "trafficPolicy": {
                "tls": {"mode": "ISTIO_MUTUAL"},
                "portLevelSettings": [
                    {"port": {"number": 9090}, "connectionPool": {"tcp": {"maxConnections": 1}}}
                ],
            },
        },
    ],
}


def effective(subset: str | None, port: int | None) -> dict[str, Any] | None:
    policy = effective_subset_policy(ok(copy.deepcopy(MERGE)), subset, port)
    assert policy is None or isinstance(policy, TrafficPolicy)
    return None if policy is None else policy.to_json()


def test_host_policy_without_port_drops_port_level_settings() -> None:
    expected = dict(MERGE["trafficPolicy"])
    del expected["portLevelSettings"]
    assert effective(None, None) == expected
    assert effective(None, 9080) == expected  # no entry for this port


def test_subset_without_policy_inherits_everything() -> None:
    assert effective("v1", 9080) == effective(None, 9080)
    assert effective("unknown", 9080) == effective(None, 9080)


def test_subset_block_replaces_the_whole_block() -> None:
    got = effective("v2", 9080)
    assert got is not None
    # maxRequestsPerConnection and http settings are not inherited into v2's connectionPool
    assert got["connectionPool"] == {"tcp": {"maxConnections": 5}}
    assert got["outlierDetection"] == {"consecutive5xxErrors": 3}
    assert got["loadBalancer"] == {"simple": "ROUND_ROBIN"}
    assert got["tunnel"] == {"targetHost": "proxy.example.com", "targetPort": 3128}
    assert got["retryBudget"] == {"percent": 30.0}


def test_port_level_settings_replace_the_dr_policy_without_inheritance() -> None:
    # first matching entry wins; unset blocks, tunnel and retryBudget are not inherited
    assert effective(None, 8080) == {"loadBalancer": {"simple": "RANDOM"}}


def test_subset_merges_over_the_port_level_dr_policy() -> None:
    assert effective("v2", 8080) == {
        "loadBalancer": {"simple": "RANDOM"},
        "connectionPool": {"tcp": {"maxConnections": 5}},
        "tunnel": {"targetHost": "proxy.example.com", "targetPort": 3128},
    }


def test_subset_port_level_replaces_all_four_blocks() -> None:
    # v3 has a port-level entry for 9090: its unset blocks clear the DR's blocks too
    assert effective("v3", 9090) == {
        "connectionPool": {"tcp": {"maxConnections": 1}},
        "retryBudget": {"percent": 30.0},
    }
    got = effective("v3", 9080)
    assert got is not None
    assert got["tls"] == {"mode": "ISTIO_MUTUAL"}
    assert got["connectionPool"] == MERGE["trafficPolicy"]["connectionPool"]


def test_subset_policy_alone_when_dr_has_none() -> None:
    dr = ok({"host": "r", "subsets": [{"name": "a", "trafficPolicy": {"tls": {"mode": "SIMPLE"}}}]})
    policy = effective_subset_policy(dr, "a", 80)
    assert policy is not None and policy.to_json() == {"tls": {"mode": "SIMPLE"}}
    assert effective_subset_policy(dr, None, 80) is None


def test_port_only_policy_resolves_to_none_for_other_ports() -> None:
    dr = ok(
        with_policy({"portLevelSettings": [{"port": {"number": 80}, "tls": {"mode": "SIMPLE"}}]})
    )
    assert effective_subset_policy(dr, None, 81) is None
    policy = effective_subset_policy(dr, None, 80)
    assert policy is not None and policy.to_json() == {"tls": {"mode": "SIMPLE"}}
