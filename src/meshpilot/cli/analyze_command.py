"""`meshpilot analyze`: istioctl analyze for meshpilot config, with istioctl's codes and exit code.

Offline with files (`-f`, directories, `-` for stdin; no server needed), online with no
files (every resource the control plane stores), or both with `--with-server` (the
files overlay the live config, as `istioctl analyze FILES` does on a cluster).

Exit codes, as istioctl's: 79 when a message reaches `--failure-threshold` (log output
only: istioctl exits 0 with `-o json|yaml`), 1 when input cannot be used (unparseable
files, unreachable control plane, bad flags), else 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..analyze.analyzers import ALL, named
from ..analyze.catalogue import CATALOGUE, ERROR, INFO, Level, parse_level
from ..analyze.framework import Result, Suppression, run_analyzers
from ..analyze.output import FORMATS, render
from ..analyze.sources import Loaded, default_resources, fetch_objects, load_files, load_objects
from .client import ApiError, Client

EXIT_FOUND_ISSUES = 79
CONFIG_ANALYSIS_URL = "https://istio.io/latest/docs/reference/config/analysis"


def err(text: str) -> None:
    print(text, file=sys.stderr)


def _level(text: str) -> Level:
    try:
        return parse_level(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_analyze_command(sub: Any) -> None:
    p = sub.add_parser(
        "analyze",
        help="analyze Istio configuration and print validation messages (istioctl analyze)",
        description="Analyze VirtualServices, DestinationRules, Gateways, ServiceEntries, "
                    "WorkloadEntries, Services and Secrets with Istio's analyzers and print "
                    f"istioctl's messages. Message codes: {CONFIG_ANALYSIS_URL}",
    )
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="files or directories to analyze (like -f)")
    p.add_argument("-f", "--filename", action="append", default=[], metavar="PATH",
                   help="file, directory (recursive) or - for stdin; repeatable. Without "
                        "files, the control plane's config is analyzed")
    p.add_argument("--with-server", action="store_true",
                   help="analyze the files together with the control plane's live config "
                        "(files win), like istioctl's --use-kube")
    p.add_argument("-n", "--namespace",
                   help="namespace to report on, and the namespace of file resources that "
                        "name none (default: default)")
    p.add_argument("-A", "--all-namespaces", action="store_true",
                   help="report on all namespaces")
    p.add_argument("-o", "--output", default="log", choices=FORMATS,
                   help="output format (default log)")
    p.add_argument("--output-threshold", type=_level, default=INFO, metavar="LEVEL",
                   help="lowest level printed: Info (default), Warning or Error")
    p.add_argument("--failure-threshold", type=_level, default=ERROR, metavar="LEVEL",
                   help="lowest level that makes the exit code 79 (default Error)")
    p.add_argument("-S", "--suppress", action="append", default=[], metavar="CODE=RESOURCE",
                   help="suppress a code on resources matching a glob, e.g. "
                        "'IST0109=VirtualService traffic-demo/*'; repeatable")
    p.add_argument("--analyzer", action="append", default=[], metavar="NAME",
                   help="run only this analyzer (see -L); repeatable")
    p.add_argument("-L", "--list-analyzers", action="store_true",
                   help="list the analyzers and exit")
    p.add_argument("--color", action=argparse.BooleanOptionalAction, default=None,
                   help="color the level (default: when stdout is a terminal)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also print which analyzers ran")
    p.add_argument("--server", metavar="URL",
                   help="control plane API address (default: $MESHPILOT_SERVER or "
                        "http://127.0.0.1:15014)")
    p.set_defaults(func=analyze)


def list_analyzers() -> str:
    return "".join(f"* {a.name}:\n    {a.description}\n" for a in ALL)


def _suppressions(values: list[str]) -> list[Suppression]:
    out = []
    for value in values:
        s = Suppression.parse(value)
        if s.code not in CATALOGUE:
            err(f"Warning: Supplied message code '{s.code}' is an unknown message code and "
                "will not have any effect.")
        out.append(s)
    return out


def _color(flag: bool | None) -> bool:
    if flag is not None:
        return flag
    return sys.stdout.isatty() and os.environ.get("TERM", "").lower() != "dumb"


def _live(args: argparse.Namespace) -> Loaded | None:
    try:
        return load_objects(fetch_objects(Client(args.server)))
    except ApiError as e:
        err(f"error: {e}")
        return None


def _namespace_exists(args: argparse.Namespace, namespace: str) -> bool | None:
    try:
        listing = Client(args.server).get("/api/v1/namespaces")
    except ApiError as e:
        err(f"error: {e}")
        return None
    return any(item["metadata"]["name"] == namespace for item in listing.get("items") or [])


def _target(namespace: str | None) -> str:
    return "all namespaces" if namespace is None else f"namespace: {namespace}"


def _clean_line(files: list[str], namespace: str | None) -> str:
    """istioctl's success line: the files analyzed, else the namespace(s)."""
    if len(files) > 1:
        return "\u2714 No validation issues found when analyzing:\n  - " + "\n  - ".join(files)
    if files:
        return f"\u2714 No validation issues found when analyzing {files[0]}."
    return f"\u2714 No validation issues found when analyzing {_target(namespace)}."


def _hint(result: Result, threshold: Level, namespace: str | None) -> None:
    """Say when the namespace filter hid messages: with files in another namespace,
    istioctl's default (`default`) would otherwise report nothing, silently."""
    hidden = [m for m in result.hidden if m.type.level.at_least(threshold)]
    if not hidden or namespace is None:
        return
    others = sorted({m.origin.namespace for m in hidden if m.origin is not None})
    example = others[0] if len(others) == 1 else "NAMESPACE"
    err(f"Info: {len(hidden)} message(s) in namespace(s) {', '.join(others)} not shown "
        f"(analyzing {_target(namespace)}); use -n {example} or -A to see them.")


def analyze(args: argparse.Namespace) -> int:
    if args.list_analyzers:
        print(list_analyzers(), end="")
        return 0
    try:
        analyzers = named(args.analyzer) if args.analyzer else ALL
        suppressions = _suppressions(args.suppress)
    except KeyError as e:
        err(f"error: unknown analyzer {e}; see `meshpilot analyze -L`")
        return 1
    except ValueError as e:
        err(f"error: {e}")
        return 1
    namespace = None if args.all_namespaces else (args.namespace or "default")
    paths = [*args.paths, *args.filename]
    online = not paths or args.with_server

    loaded = Loaded()
    if online:
        if namespace is not None and not paths:
            exists = _namespace_exists(args, namespace)
            if exists is None:
                return 1
            if not exists:
                err(f'namespace "{namespace}" not found')
                return 0
        live = _live(args)
        if live is None:
            return 1
        loaded = live
    else:
        loaded = default_resources()
    files = load_files(paths, namespace or "default") if paths else Loaded()
    loaded = loaded.extend(files)
    for notice in loaded.notices:
        err(notice)
    for issue in loaded.input_errors:
        err(issue.format())
    if loaded.input_errors:
        err(f"Error(s) adding files: {len(loaded.input_errors)} problem(s) above")

    result = run_analyzers(loaded.analysis_input(), analyzers, namespace=namespace,
                           suppressions=suppressions)
    if args.verbose:
        err(f"Analyzed resources in {_target(namespace)}")
        err("Executed analyzers:\n" + "\n".join(f"\t {name}" for name in result.executed) + "\n")
    shown = [m for m in result.messages if m.type.level.at_least(args.output_threshold)]
    text = render(shown, args.output, color=args.output == "log" and _color(args.color))
    if text:
        print(text)
    if not shown:
        if loaded.input_errors:
            count = len({i.source for i in loaded.input_errors})
            err(f"No validation issues found when analyzing {_target(namespace)} (but "
                f"{count} file{'' if count == 1 else 's'} could not be parsed).")
        else:
            err(_clean_line(files.files, namespace))
    _hint(result, args.output_threshold, namespace)
    if args.output != "log":
        return 0
    if any(m.type.level.at_least(args.failure_threshold) for m in result.messages):
        err(f"Error: Analyzers found issues when analyzing {_target(namespace)}.\n"
            f"See {CONFIG_ANALYSIS_URL} for more information about causes and resolutions.")
        return EXIT_FOUND_ISSUES
    return 1 if loaded.input_errors else 0
