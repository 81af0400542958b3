"""`meshpilot canary ...`: watch and steer progressive rollouts (Argo's kubectl plugin verbs).

    meshpilot canary get NAME [-n NS] [-w]      live view: phase, weights, step, checks, history
    meshpilot canary start|promote [--full]|pause|resume|abort|rollback|undo|retry NAME
    meshpilot canary set-weight NAME 10         the seed's `deploy_canary 10` (pauses automation)
    meshpilot canary analyze NAME               one round of checks now; exit 0 pass, 1 fail,
                                                2 no data (the seed's `monitor_canary`)

Every verb is a REST call to the control plane, where the controller applies it; the
command only formats. Stdlib only, like the rest of the CLI, so it starts fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from .client import ApiError, Client

GROUP_PATH = "/apis/meshpilot.io/v1alpha1"
UNITS = {"request-success-rate": "%", "request-duration": "ms"}
VERBS = {
    "start": "start a rollout now (skips the workload check and the confirm-rollout gate)",
    "promote": "open the next gate or end a pause (--full: skip to promotion)",
    "pause": "pause the rollout (weights stay)",
    "resume": "resume a paused rollout (restarts the current step's dwell)",
    "abort": "roll back now without analysis (Argo's abort)",
    "rollback": "roll back now, recording --reason",
    "undo": "back to stable 100 %% at once, also after Succeeded (no analysis, no hooks)",
    "retry": "restart a Failed rollout from step 1",
}


def _item(ns: str, name: str) -> str:
    return f"{GROUP_PATH}/namespaces/{ns}/canaries/{name}"


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _fail(e: ApiError) -> int:
    _err(f"error: {e}")
    return 1


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        number = float(value)
        return str(int(number)) if number == int(number) else f"{number:.{digits}f}"
    return str(value)


def _ago(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return ""
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    seconds = (now - then).total_seconds()
    if seconds < 120:
        return f"{seconds:.1f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def _time(stamp: str) -> str:
    """`2026-11-27T10:00:01.234Z` -> `10:00:01.234` (the history's clock)."""
    return stamp[11:23] if len(stamp) >= 23 else stamp


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows]


def render(obj: dict[str, Any], events: list[dict[str, Any]], now: datetime | None = None,
           history: int = 12) -> str:
    """The `canary get` view (pure, so it is unit-testable)."""
    now = now or datetime.now(UTC)
    meta, spec, st = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status") or {}
    name, ns = meta.get("name", ""), meta.get("namespace", "")
    stable, canary = spec.get("stableSubset", "stable"), spec.get("canarySubset", "canary")
    phase = st.get("phase") or "(not initialized yet)"
    weight = int(st.get("canaryWeight") or 0)
    target = st.get("target") or {}
    lines = [f"Name:            {name}", f"Namespace:       {ns}", f"Phase:           {phase}"]
    if st.get("message"):
        lines.append(f"Message:         {st['message']}")
    host = target.get("host") or spec.get("host", "")
    lines.append(f"Host:            {host}")
    vs = st.get("virtualService")
    if vs:
        created = " (created by this Canary)" if st.get("createdVirtualService") else ""
        lines.append(f"VirtualService:  {st.get('virtualServiceNamespace') or ns}/{vs}{created}")
    sv, cv = target.get("stableVersion"), target.get("canaryVersion")

    def label(subset: str, version: str | None) -> str:
        return subset if not version or version == subset else f"{subset} (version {version})"

    lines.append(f"Weights:         stable {label(stable, sv)} {100 - weight}%   "
                 f"canary {label(canary, cv)} {weight}%")
    count = st.get("stepCount") or 0
    index = st.get("stepIndex") or 0
    if count:
        shown = min(index + 1, count)
        where = f"{shown}/{count}" if index < count else f"{count}/{count} (all steps done)"
        lines.append(f"Step:            {where}   state: {st.get('stepState') or '-'}"
                     f"   rollout #{st.get('rollout', 0)}")
    if st.get("appliedRevision") is not None:
        acked = st.get("ackedVersion")
        lines.append(f"Applied:         store revision {st['appliedRevision']}   ACKed: "
                     f"{acked if acked else 'waiting for every Envoy'}")
    if st.get("stepStartedAt"):
        lines.append(f"Dwell started:   {st['stepStartedAt']} ({_ago(st['stepStartedAt'], now)})")
    analysis = spec.get("analysis") or {}
    lines.append(f"Failed checks:   {st.get('failedChecks', 0)}/"
                 f"{analysis.get('failureLimit', 1)}   consecutive "
                 f"{st.get('consecutiveFailures', 0)}   inconclusive "
                 f"{st.get('inconclusiveChecks', 0)}   rounds {st.get('checkRounds', 0)}")
    if st.get("waitingFor"):
        lines.append(f"Waiting for:     {st['waitingFor']}")
    checks = st.get("checks") or []
    if checks:
        lines.append("Checks:")
        rows = [["NAME", "VALUE", "THRESHOLD", "REQUESTS", "VERDICT", "RESULT"]]
        for c in checks:
            unit = UNITS.get(str(c.get("name")), "") if c.get("value") is not None else ""
            rows.append([str(c.get("name", "")), _num(c.get("value")) + unit,
                         str(c.get("threshold") or "-"), _num(c.get("requests")),
                         str(c.get("verdict", "")), str(c.get("outcome", ""))])
        lines += _table(rows)
        for c in checks:
            lines.append(f"    {c.get('name')}: {c.get('message', '')}")
    if events:
        lines.append("History:")
        for e in events[-history:]:
            mark = "!" if e.get("type") == "Warning" else " "
            lines.append(f"  {mark}{_time(str(e.get('time', '')))}  {e.get('reason', ''):<18} "
                         f"{e.get('message', '')}")
    return "\n".join(lines)


def _fetch(client: Client, ns: str, name: str, history: int) -> tuple[dict, list]:
    obj = client.get(_item(ns, name))
    try:
        events = client.get(_item(ns, name) + f"/events?limit={history}").get("items", [])
    except ApiError:
        events = []
    return obj, events


def get_command(args: argparse.Namespace) -> int:
    client = Client(args.server)
    ns = args.namespace or "default"
    try:
        if args.output == "json":
            obj, events = _fetch(client, ns, args.name, args.history)
            print(json.dumps({"canary": obj, "events": events}, indent=2))
            return 0
        last = ""
        while True:
            obj, events = _fetch(client, ns, args.name, args.history)
            text = render(obj, events, history=args.history)
            if not args.watch:
                print(text)
                return 0
            if text != last:
                if sys.stdout.isatty():
                    sys.stdout.write("\x1b[H\x1b[2J")
                else:
                    print("---")
                print(text, flush=True)
                last = text
            time.sleep(args.interval)
    except ApiError as e:
        return _fail(e)


def action_command(args: argparse.Namespace) -> int:
    client = Client(args.server)
    ns = args.namespace or "default"
    body: dict[str, Any] = {}
    action = args.canary_verb
    if action == "promote" and args.full:
        body["full"] = True
    if action == "rollback" and args.reason:
        body["reason"] = args.reason
    if action == "set-weight":
        body["weight"] = args.weight
    try:
        result = client.post(_item(ns, args.name) + f"/actions/{action}", body)
    except ApiError as e:
        return _fail(e)
    st = result.get("status") or {}
    print(f"canary.meshpilot.io/{args.name} {action}: {result.get('message', '')} "
          f"(phase {st.get('phase', '?')}, weight {st.get('canaryWeight', 0)})")
    return 0


def analyze_command(args: argparse.Namespace) -> int:
    """The seed's `monitor_canary`, done right: success rate, p95 and the request count of
    the canary subset now, and every configured check; exit 0 pass, 1 fail, 2 no data."""
    client = Client(args.server)
    ns = args.namespace or "default"
    try:
        result = client.get(_item(ns, args.name) + "/analysis")
    except ApiError as e:
        return _fail(e)
    if args.output == "json":
        print(json.dumps(result, indent=2))
    else:
        for role in ("canary", "stable"):
            s = (result.get("summary") or {}).get(role) or {}
            rate = s.get("successRate")
            print(f"{role:<7} {s.get('version', '?'):<8} success rate "
                  f"{'-' if rate is None else f'{rate:.2f}%'}   p95 "
                  f"{'-' if s.get('p95Ms') is None else _num(s['p95Ms']) + 'ms'}   "
                  f"requests {s.get('requests', 0)} (last {s.get('seconds', '?')}s)")
        checks = result.get("checks") or []
        if checks:
            rows = [["CHECK", "VALUE", "THRESHOLD", "REQUESTS", "VERDICT"]]
            rows += [[str(c.get("name")), _num(c.get("value")), str(c.get("threshold") or "-"),
                      _num(c.get("requests")), str(c.get("verdict"))] for c in checks]
            print("\n".join(line[2:] for line in _table(rows)))
            for c in checks:
                print(f"  {c.get('name')}: {c.get('message')}")
        print(f"verdict: {result.get('verdict')}")
    return {"pass": 0, "fail": 1}.get(str(result.get("verdict")), 2)


def add_canary_command(sub: argparse._SubParsersAction) -> None:
    """Registers `canary` and its verbs."""
    canary = sub.add_parser("canary", help="watch and steer progressive rollouts (Canary)",
                            description="Progressive delivery: live view and actions for "
                                        "meshpilot.io/v1alpha1 Canary resources.")
    verbs = canary.add_subparsers(dest="canary_verb", metavar="VERB", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("name", metavar="NAME", help="the Canary's name")
        p.add_argument("-n", "--namespace", help="namespace (default: default)")
        p.add_argument("--server", metavar="URL",
                       help="control plane API address (default: $MESHPILOT_SERVER or "
                            "http://127.0.0.1:15014)")

    get = verbs.add_parser("get", help="phase, weights, step, checks and history")
    common(get)
    get.add_argument("-w", "--watch", action="store_true", help="refresh until Ctrl-C")
    get.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                     help="refresh period with -w (default 1)")
    get.add_argument("--history", type=int, default=12, metavar="N",
                     help="events of the rollout history to show (default 12)")
    get.add_argument("-o", "--output", choices=["json"], help="the Canary and its events as JSON")
    get.set_defaults(func=get_command)

    for verb, text in VERBS.items():
        p = verbs.add_parser(verb, help=text)
        common(p)
        if verb == "promote":
            p.add_argument("--full", action="store_true",
                           help="skip the remaining steps, checks and gates")
        if verb == "rollback":
            p.add_argument("--reason", help="why (recorded in status and the history)")
        p.set_defaults(func=action_command)

    sw = verbs.add_parser("set-weight", help="set the canary weight by hand (pauses "
                                             "automation; resume continues the plan)")
    common(sw)
    sw.add_argument("weight", type=int, metavar="WEIGHT", help="0..100")
    sw.set_defaults(func=action_command)

    an = verbs.add_parser("analyze", help="run the checks once now: exit 0 pass, 1 fail, "
                                          "2 no data")
    common(an)
    an.add_argument("-o", "--output", choices=["json"])
    an.set_defaults(func=analyze_command)
