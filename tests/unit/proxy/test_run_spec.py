"""`meshpilot run`: what each replica is started with, the restart backoff, and the
command line (options after NAME, the command after `--`). No process is started."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from meshpilot.cli import run_command
from meshpilot.cli.main import build_parser
from meshpilot.proxy import run as run_module
from meshpilot.proxy.ports import free_port
from meshpilot.proxy.run import (
    BACKOFF_RESET_AFTER,
    Replica,
    RunSpec,
    app_argv,
    app_ports,
    default_command,
    replica_run,
)
from meshpilot.proxy.supervisor import ProxyRun


def spec(**kw) -> RunSpec:
    base = dict(name="sample-app-v1", namespace="traffic-demo",
                labels={"app": "sample-app", "version": "v1"}, replicas=2,
                state_dir=Path("/tmp/state"))
    base.update(kw)
    return RunSpec(**base)


def test_default_app_is_the_demo_app_for_the_labels() -> None:
    assert default_command({"app": "sample-app", "version": "v2"}) == [
        sys.executable, "-m", "meshpilot", "demo-app", "--version", "v2", "--service",
        "sample-app"]
    assert default_command({})[-3:] == ["v1", "--service", "sample-app"]


def test_placeholders_in_the_command() -> None:
    s = spec(command=["python3", "-m", "http.server", "{port}", "--name={name}", "{other}"])
    assert app_argv(s, "sample-app-v1-2", 8082) == [
        "python3", "-m", "http.server", "8082", "--name=sample-app-v1-2", "{other}"]


def test_replica_run_is_a_sidecar_of_the_workload() -> None:
    s = spec(env={"VERSION": "v1"}, port_env=["PORT"])
    run = replica_run(s, 2, 18082)
    info = run.info
    assert (info.name, info.namespace, info.workload) == ("sample-app-v1-2", "traffic-demo",
                                                          "sample-app-v1")
    assert info.labels == {"app": "sample-app", "version": "v1"}
    assert info.app_port == 18082 and info.outbound_port != 15001
    assert run.register and run.register_when_ready
    assert run.app_env["MESHPILOT_APP_PORT"] == "18082"
    assert run.app_env["PORT"] == "18082" and run.app_env["VERSION"] == "v1"
    assert run.app_env["MESHPILOT_NAME"] == "sample-app-v1-2"
    assert run.annotations["meshpilot.io/workload"] == "sample-app-v1"
    assert run.directory == Path("/tmp/state/proxies/traffic-demo/sample-app-v1-2")
    assert list(run.app_argv)[:4] == [sys.executable, "-m", "meshpilot", "demo-app"]


def test_app_ports_consecutive_from_a_base_or_free() -> None:
    base = free_port()
    assert app_ports(spec(app_port=base, replicas=3)) == [base, base + 1, base + 2]
    assert len(set(app_ports(spec(replicas=3)))) == 3
    with pytest.raises(ValueError, match="runs past 65535"):
        app_ports(spec(app_port=65535, replicas=2))


class FakeInstance:
    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self.stopped = False

    def stop(self, grace: float = 5.0) -> None:
        self.stopped = True


def test_backoff_doubles_to_a_cap_and_resets_after_a_long_run(capsys) -> None:
    replica = Replica(1, replica_run(spec(), 1, free_port()), shared=None,  # type: ignore[arg-type]
                      owner=None)  # type: ignore[arg-type]
    delays = []
    now = 1000.0
    for _ in range(7):
        replica.instance = FakeInstance(now - 1)  # type: ignore[assignment]
        replica.fail(now, "app exited with code 1")
        delays.append(replica.next_start - now)
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    inst = FakeInstance(now - BACKOFF_RESET_AFTER - 1)
    replica.instance = inst  # type: ignore[assignment]
    replica.fail(now, "app exited with code 0")
    assert inst.stopped and replica.instance is None
    assert replica.next_start - now == 1 and replica.restarts == 8
    assert "restarting in 1s (restart 8)" in capsys.readouterr().err


def test_zero_replicas_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        run_module.run_workload(spec(replicas=0))


# --- the command line ---------------------------------------------------------------------------

def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """What `run` sees: the first parse plus its second pass over what follows NAME."""
    args = build_parser().parse_args(argv)
    rest = list(args.rest)
    split = rest.index("--") if "--" in rest else len(rest)
    if rest[:split]:
        again = argparse.ArgumentParser(add_help=False)
        run_command._options(again, defaults=False)
        again.parse_args(rest[:split], namespace=args)
    return args, rest[split + 1:]


def test_options_before_and_after_name_and_the_command() -> None:
    args, command = parse(["run", "-n", "traffic-demo", "sample-app-v1", "--labels",
                           "app=sample-app,version=v1", "--replicas", "2", "-e", "A=1", "--",
                           "python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"])
    assert (args.name, args.namespace, args.replicas, args.env) == (
        "sample-app-v1", "traffic-demo", 2, [("A", "1")])
    assert args.labels == "app=sample-app,version=v1"
    assert command == ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"]


def test_defaults_without_options() -> None:
    args, command = parse(["run", "web"])
    assert (args.namespace, args.replicas, args.labels, command) == ("default", 1, None, [])


def test_bad_name_is_refused(capsys) -> None:
    assert run_command.run(build_parser().parse_args(["run", "Bad_Name"])) == 1
    assert "invalid workload name 'Bad_Name'" in capsys.readouterr().err


def test_a_command_that_cannot_exist_is_refused_before_starting() -> None:
    with pytest.raises(ValueError, match="command not found: 'no-such-program-x'"):
        run_module.run_workload(spec(command=["no-such-program-x", "--flag"]))


def test_a_restart_takes_new_ports_when_its_old_ones_were_taken(monkeypatch, capsys) -> None:
    import socket

    started: list[ProxyRun] = []

    class Instance:
        def __init__(self, run: ProxyRun, *args: object) -> None:
            self.run = run

        def start(self) -> None:
            started.append(self.run)

    monkeypatch.setattr(run_module, "ProxyInstance", Instance)
    s = spec()
    first = replica_run(s, 1, free_port())
    replica = Replica(1, first, shared=None, owner=None,  # type: ignore[arg-type]
                      rebuild=lambda: replica_run(s, 1, free_port()))
    replica.start(0.0)  # first start: ports kept as they are
    assert started[-1] is first
    replica.restarts = 1
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", first.info.app_port or 0))
        squatter.listen()
        replica.start(1.0)
    assert started[-1] is not first
    assert started[-1].info.app_port != first.info.app_port
    assert started[-1].info.name == "sample-app-v1-1"
    assert f"port {first.info.app_port} taken meanwhile; new ports" in capsys.readouterr().err
