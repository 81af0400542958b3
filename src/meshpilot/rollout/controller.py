"""The canary controller: walks each Canary's plan inside the control plane.

One asyncio worker per Canary reconciles it whenever the store changes (the Canary, its
VirtualService, DestinationRules, WorkloadEntries) and on a short tick. A reconcile is a
series of small transitions, each with at most one side effect (a VirtualService write,
a round of webhooks, a round of checks) followed by a status write, so the stored status
always says what to do next:

    Initialized -> [confirm-rollout] -> Progressing: pre-rollout hooks, then per step
        apply (one VirtualService write) -> sync (every Envoy ACKed config built from a
        store revision >= that write) -> dwell (starts at the ACK) -> checks
    -> [confirm-promotion] -> Promoting (one write: the canary subset is the destination)
    -> Finalising (ACK) -> Succeeded
    any failure limit / progress deadline / rollback hook / user abort
    -> Failed: one write (stable 100 %, managed routes gone) -> ACK verified

Why the dwell starts at the ACK: a check must judge traffic that ran with the step's
weights; neither Flagger nor Argo Rollouts verifies that the proxies have them.

Why "persist before acting": a check's result, its counters and the decision it leads to
are one status write; the VirtualService write that the decision implies happens in the
next transition. A control plane killed anywhere in between resumes from the status: it
re-applies the current step's routes (idempotent), restarts the dwell and runs the
interrupted check again, which was never counted, and never counts a stored one twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import ValidationError

from ..api.canary import CanarySpec
from ..api.resource import Resource
from ..snapshot.mesh import MeshSnapshot
from ..store import Conflict, NotFound, SqliteStore, WatchEvent
from . import routes
from .analysis import AnalysisTarget, CheckResult, MetricsSource, run_checks
from .plan import Step, plan_steps
from .state import (
    APPLY,
    CONFIRM_PROMOTION,
    CONFIRM_ROLLOUT,
    CONFIRM_TRAFFIC,
    DWELL,
    FAILED,
    FINALISING,
    INITIALIZED,
    PAUSED,
    PHASES,
    PRE,
    PROGRESSING,
    PROMOTING,
    SUCCEEDED,
    SYNC,
    TERMINAL,
    WAITING,
    WAITING_PROMOTION,
    CanaryStatus,
    now_utc,
    parse_time,
    rfc3339,
)
from .webhooks import HookResult, call_hooks

log = logging.getLogger("meshpilot.rollout")

KIND = "Canary"
VS_KIND = "VirtualService"
# Changes of these kinds can open a Canary's start condition or its target.
WATCHED = frozenset({"VirtualService", "DestinationRule", "WorkloadEntry", "ServiceEntry",
                     "Service"})
MAX_TRANSITIONS = 32  # per reconcile; each one is persisted
RECONNECT_GRACE = 10.0  # seconds after start during which "no proxy connected" is not synced
ACTIONS = ("start", "promote", "pause", "resume", "abort", "rollback", "undo", "retry",
           "set-weight")


class SyncSource(Protocol):
    """What the xDS server tells the controller (`XdsServer.synced_at`)."""

    def synced_at(self, revision: int) -> str | None: ...


HookCaller = Callable[..., Awaitable[list[HookResult]]]
CheckRunner = Callable[..., Awaitable[list[CheckResult]]]


class ActionError(Exception):
    """An action the Canary's state does not allow (HTTP 409) or a bad request (400)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TargetError(Exception):
    """The Canary's host, subsets or VirtualService cannot be used (yet)."""


@dataclass(frozen=True)
class Target:
    """What the Canary's host and subsets resolve to in the current mesh snapshot."""

    host: str  # FQDN
    service_name: str
    service_namespace: str
    stable_version: str
    canary_version: str
    stable_workloads: int
    canary_workloads: int
    canary_labels: dict[str, str] = field(default_factory=dict)

    def analysis(self) -> AnalysisTarget:
        return AnalysisTarget(self.service_name, self.service_namespace, self.canary_version,
                              self.stable_version)

    def to_status(self) -> dict[str, Any]:
        return {"host": self.host, "service": self.service_name,
                "serviceNamespace": self.service_namespace,
                "stableVersion": self.stable_version, "canaryVersion": self.canary_version,
                "stableWorkloads": self.stable_workloads,
                "canaryWorkloads": self.canary_workloads}


@dataclass
class _Event:
    reason: str
    message: str
    type: str = "Normal"
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """One Canary as a reconcile sees it: the stored object and its parsed spec."""

    res: Resource
    spec: CanarySpec
    steps: list[Step]
    outbox: list[_Event] = field(default_factory=list)  # events to append after the save

    @property
    def name(self) -> str:
        return self.res.name

    @property
    def namespace(self) -> str:
        return self.res.namespace

    @property
    def interval(self) -> float:
        return self.spec.analysis.interval_seconds

    @property
    def deadline(self) -> float:
        return self.spec.analysis.progress_deadline_seconds

    def checksum(self, rollout: int) -> str:
        """Flagger's webhook checksum: which spec is being rolled out (and which run)."""
        text = json.dumps(self.res.body, sort_keys=True) + f"#{rollout}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_spec(res: Resource) -> CanarySpec:
    return CanarySpec.model_validate(res.body, by_alias=True, by_name=False,
                                     context={"namespace": res.namespace})


def _cookie_value() -> str:
    """Flagger's affinity cookie value: 10 random letters, new per rollout."""
    return "".join(secrets.choice(string.ascii_letters) for _ in range(10))


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.4g}"


class CanaryController:
    """Runs every Canary in the store (see the module docstring). Inject the clock and
    the sources so unit tests drive `reconcile` step by step without Envoy."""

    def __init__(self, store: SqliteStore, *, mesh: Callable[[], MeshSnapshot],
                 sync: SyncSource | None, metrics: MetricsSource,
                 clock: Callable[[], datetime] = now_utc, tick: float = 0.2,
                 hooks: HookCaller = call_hooks, checks: CheckRunner = run_checks) -> None:
        self.store = store
        self._mesh = mesh
        self._sync = sync
        self._metrics = metrics
        self._clock = clock
        self.tick = tick
        self._hooks = hooks
        self._checks = checks
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._wakes: dict[tuple[str, str], asyncio.Event] = {}
        self._workers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self._scan = asyncio.Event()
        self._unsubscribe: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started: datetime | None = None  # set by start(), for RECONNECT_GRACE
        self._background: set[asyncio.Task[Any]] = set()
        # (namespace, name) -> (status, spec) for /metrics, refreshed on every save
        self._seen: dict[tuple[str, str], tuple[CanaryStatus, CanarySpec | None]] = {}

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume stored rollouts, then run: one worker per Canary."""
        self._loop = asyncio.get_running_loop()
        self._started = self._clock()
        self._unsubscribe = self.store.subscribe(self._on_store_events)
        await self.resume_all()
        self._supervisor = self._loop.create_task(self._supervise(), name="canary-controller")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        tasks = [t for t in (self._supervisor, *self._workers.values()) if t is not None]
        tasks += list(self._background)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._supervisor = None
        self._workers.clear()
        self._background.clear()

    def _on_store_events(self, events: list[WatchEvent]) -> None:
        """Store subscriber (any thread): wake the workers the change concerns."""
        loop = self._loop
        if loop is None:
            return
        keys: set[tuple[str, str]] = set()
        everyone = False
        for ev in events:
            if ev.resource.kind == KIND:
                keys.add((ev.resource.namespace, ev.resource.name))
            elif ev.resource.kind in WATCHED:
                everyone = True
        if keys or everyone:
            loop.call_soon_threadsafe(self._wake, keys, everyone)

    def _wake(self, keys: set[tuple[str, str]], everyone: bool) -> None:
        if keys - set(self._workers):
            self._scan.set()
        for key, event in self._wakes.items():
            if everyone or key in keys:
                event.set()

    async def _supervise(self) -> None:
        """Keep one worker per stored Canary; rescan on Canary events and every second."""
        while True:
            self._scan.clear()
            try:
                items = await asyncio.to_thread(self.store.list, KIND)
            except Exception:
                log.exception("canary controller: cannot list Canaries")
                items = []
            keys = {(r.namespace, r.name) for r in items}
            for key in keys:
                task = self._workers.get(key)
                if task is None or task.done():
                    self._wakes.setdefault(key, asyncio.Event())
                    self._workers[key] = asyncio.get_running_loop().create_task(
                        self._work(key), name=f"canary {key[0]}/{key[1]}")
            for key in set(self._workers) - keys:
                self._workers.pop(key).cancel()
                self._wakes.pop(key, None)
                self._seen.pop(key, None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._scan.wait(), 1.0)

    async def _work(self, key: tuple[str, str]) -> None:
        wake = self._wakes.setdefault(key, asyncio.Event())
        while True:
            wake.clear()
            try:
                if not await self.reconcile(*key):
                    self._seen.pop(key, None)
                    return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("canary %s/%s: reconcile failed", *key)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.tick)

    # --- store access ---------------------------------------------------------------------

    def _lock(self, namespace: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((namespace, name), asyncio.Lock())

    async def _get(self, kind: str, namespace: str, name: str) -> Resource | None:
        return await asyncio.to_thread(self.store.get, kind, namespace, name)

    def _context(self, res: Resource) -> Context:
        spec = parse_spec(res)
        return Context(res, spec, plan_steps(spec))

    async def _save(self, ctx: Context, st: CanaryStatus) -> None:
        """Status first, then the events it explains (the status is what resumes)."""
        try:
            await asyncio.to_thread(self.store.update_status, KIND, ctx.namespace, ctx.name,
                                    st.to_dict())
        except NotFound:
            ctx.outbox.clear()
            return
        self._seen[(ctx.namespace, ctx.name)] = (st.copy(), ctx.spec)
        await self._flush(ctx, st)

    async def _flush(self, ctx: Context, st: CanaryStatus) -> None:
        events, ctx.outbox = ctx.outbox, []
        for ev in events:
            data = {"rollout": st.rollout, "phase": st.phase, "step": st.stepIndex,
                    "weight": st.canaryWeight, **ev.data}
            try:
                await asyncio.to_thread(self.store.append_event, KIND, ctx.namespace,
                                        ctx.name, reason=ev.reason, message=ev.message,
                                        type_=ev.type, data=data)
            except Exception:
                log.exception("canary %s/%s: cannot append event", ctx.namespace, ctx.name)
            level = logging.WARNING if ev.type == "Warning" else logging.INFO
            log.log(level, "canary %s/%s: %s", ctx.namespace, ctx.name, ev.message)
            if any(h.type == "event" for h in ctx.spec.webhooks):
                extra = {"eventMessage": ev.message, "eventType": ev.type,
                         "timestamp": str(int(self._clock().timestamp() * 1000))}
                self._spawn(self._hooks(ctx.spec.webhooks, "event", name=ctx.name,
                                        namespace=ctx.namespace, phase=st.phase,
                                        checksum=ctx.checksum(st.rollout),
                                        metadata_extra=extra))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        """Fire and forget (event webhooks), keeping a reference until done."""
        async def run() -> None:
            try:
                await coro
            except Exception:
                log.exception("canary event webhook failed")

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    def _event(ctx: Context, reason: str, message: str, type_: str = "Normal",
               **data: Any) -> None:
        ctx.outbox.append(_Event(reason, message, type_, data))

    # --- reconcile --------------------------------------------------------------------------

    async def resume_all(self) -> None:
        """After a (re)start: every rollout that was moving re-applies its current route
        state and restarts its dwell; the interrupted check was not counted, so it runs
        again; nothing stored is counted twice."""
        items = await asyncio.to_thread(self.store.list, KIND)
        for res in items:
            async with self._lock(res.namespace, res.name):
                st = CanaryStatus.from_dict(res.status)
                try:
                    ctx = self._context(res)
                except ValidationError:
                    continue
                self._seen[(res.namespace, res.name)] = (st.copy(), ctx.spec)
                if not self._resume(ctx, st):
                    continue
                await self._save(ctx, st)

    def _resume(self, ctx: Context, st: CanaryStatus) -> bool:
        now = self._clock()
        if st.phase == PROGRESSING and st.stepState in (SYNC, DWELL):
            what = f"step {st.stepIndex + 1}/{st.stepCount} (weight {st.canaryWeight})"
            st.stepState, st.stepStartedAt, st.ackedVersion = APPLY, None, None
        elif st.phase in (PROMOTING, FINALISING) and st.stepState in (SYNC, DWELL):
            st.phase, st.stepState, st.ackedVersion = PROMOTING, APPLY, None
            what = "the promotion"
        elif st.phase == FAILED and st.stepState == SYNC:
            st.stepState, st.ackedVersion = APPLY, None
            what = "the rollback"
        elif st.phase == PAUSED and st.stepState in (SYNC, DWELL):
            st.stepState, st.ackedVersion = APPLY, None
            what = "the paused state"
        else:
            return False
        st.progressAt = rfc3339(now)  # the control plane's downtime is not the canary's
        self._event(ctx, "Resumed", f"control plane restarted: re-applying {what}; the dwell "
                               "restarts once every Envoy has ACKed it")
        return True

    async def reconcile(self, namespace: str, name: str) -> bool:
        """Advance one Canary as far as it can go now; False if it no longer exists."""
        async with self._lock(namespace, name):
            res = await self._get(KIND, namespace, name)
            if res is None:
                return False
            st = CanaryStatus.from_dict(res.status)
            try:
                ctx = self._context(res)
            except ValidationError as e:
                # The API validates on write; a stored spec that no longer parses (an
                # older meshpilot wrote it) is reported, never acted on.
                st.phase = st.phase or INITIALIZED
                st.error = st.message = f"invalid spec: {e.errors()[0].get('msg', e)}"
                await asyncio.to_thread(self.store.update_status, KIND, namespace, name,
                                        st.to_dict())
                return True
            self._seen[(namespace, name)] = (st.copy(), ctx.spec)
            for _ in range(MAX_TRANSITIONS):
                before = st.to_dict()
                try:
                    moved = await self._transition(ctx, st)
                except TargetError as e:
                    moved = self._target_problem(ctx, st, str(e))
                if st.to_dict() != before or ctx.outbox:
                    await self._save(ctx, st)
                if not moved:
                    break
            return True

    def _target_problem(self, ctx: Context, st: CanaryStatus, problem: str) -> bool:
        """Cannot resolve the target: report it; an active rollout holds (and the progress
        deadline, if it passes, rolls back)."""
        st.phase = st.phase or INITIALIZED
        if st.error != problem:
            st.error = problem
            st.message = f"error: {problem}"
            self._event(ctx, "TargetError", problem, "Warning")
        if st.phase == PROGRESSING:
            self._check_deadline(ctx, st, problem)
        return False

    async def _transition(self, ctx: Context, st: CanaryStatus) -> bool:
        """One step of the state machine; True if something changed and the next step may
        follow at once, False to wait (for time, an ACK, a gate or the user)."""
        if not st.phase:
            return await self._initialize(ctx, st)
        st.stepCount = len(ctx.steps)
        if st.observedGeneration != ctx.res.generation:
            return self._spec_changed(ctx, st)
        phase = st.phase
        if phase == INITIALIZED:
            return await self._maybe_start(ctx, st)
        if phase == WAITING:
            return await self._poll_gate(ctx, st)
        if phase == PROGRESSING:
            return await self._progress(ctx, st)
        if phase == PAUSED:
            return await self._paused(ctx, st)
        if phase == WAITING_PROMOTION:
            return await self._poll_gate(ctx, st)
        if phase in (PROMOTING, FINALISING):
            return await self._promote(ctx, st)
        if phase == FAILED:
            return await self._rollback(ctx, st)
        return False  # Succeeded: nothing to do until the spec changes or a user acts

    def _spec_changed(self, ctx: Context, st: CanaryStatus) -> bool:
        st.observedGeneration = ctx.res.generation
        if st.phase in TERMINAL:
            self._set_phase(st, INITIALIZED, "spec changed: a new rollout starts when the "
                                             "canary subset has workloads")
            self._event(ctx, "SpecChanged", f"spec generation {ctx.res.generation}: new rollout "
                                       "pending")
        else:
            st.stepIndex = min(st.stepIndex, len(ctx.steps))
            self._event(ctx, "SpecChanged", f"spec generation {ctx.res.generation}: the new plan "
                                       f"({len(ctx.steps)} steps) applies from step "
                                       f"{st.stepIndex + 1}")
        return True

    def _set_phase(self, st: CanaryStatus, phase: str, message: str) -> None:
        if st.phase != phase:
            st.lastTransitionTime = rfc3339(self._clock())
        st.phase = phase
        st.message = message

    # --- target ------------------------------------------------------------------------------

    def target(self, ctx: Context) -> Target:
        """Host -> service, subsets -> version labels and workloads (from the snapshot the
        proxies are served, so "has workloads" means Envoy can reach them)."""
        snap = self._mesh()
        spec = ctx.spec
        fqdn = snap.resolve_host(spec.host, ctx.namespace)
        svc = snap.service(fqdn)
        if svc is None:
            raise TargetError(f"host {spec.host!r} ({fqdn}) is not a service of the mesh: "
                              "add its Service or ServiceEntry")
        rule = snap.destination_rule(fqdn, ctx.namespace, svc.namespace)
        if rule is None:
            raise TargetError(f"no DestinationRule for {fqdn} defines subsets "
                              f"{spec.stable_subset!r} and {spec.canary_subset!r}")
        versions: dict[str, str] = {}
        labels: dict[str, dict[str, str]] = {}
        for role, subset_name in (("stable", spec.stable_subset),
                                  ("canary", spec.canary_subset)):
            subset = rule.subset(subset_name)
            if subset is None:
                raise TargetError(
                    f"{role} subset {subset_name!r} is not defined by DestinationRule "
                    f"{rule.first.namespace}/{rule.first.name} (subsets: "
                    f"{', '.join(rule.subset_names) or 'none'})")
            subset_labels = dict(subset.labels or {})
            version = subset_labels.get("version")
            if not version:
                raise TargetError(
                    f"{role} subset {subset_name!r} has no `version` label: the analysis "
                    "reads telemetry by destination_version; add labels: {version: ...}")
            versions[role], labels[role] = version, subset_labels
        port = spec.port
        ports = [port] if port else [p.port for p in svc.ports]

        def count(sel: dict[str, str]) -> int:
            return len({(e.address, e.workload) for p in ports for e in svc.endpoints_for(p, sel)})

        return Target(fqdn, svc.name, svc.namespace, versions["stable"], versions["canary"],
                      count(labels["stable"]), count(labels["canary"]), labels["canary"])

    # --- routes ------------------------------------------------------------------------------

    def route_state(self, ctx: Context, st: CanaryStatus,
                    index: int | None = None) -> routes.RouteState:
        """The managed route state after steps 0..index (default: the current step)."""
        index = st.stepIndex if index is None else index
        weight, mirror = 0, None
        headers: dict[str, tuple[dict[str, Any], ...]] = {}
        ab: tuple[dict[str, Any], ...] = ()
        for step in ctx.steps[: index + 1]:
            if step.action == "setWeight":
                weight = step.weight or 0
            elif step.action == "mirror":
                mirror = step.percentage or None
            elif step.action == "setHeaderRoute" and step.route_name:
                if step.match:
                    headers[step.route_name] = step.match
                else:
                    headers.pop(step.route_name, None)
            elif step.action == "iteration" and ctx.spec.effective_strategy == "abTest":
                ab = tuple(m.to_json() for m in ctx.spec.match or [])
        if st.manualWeight is not None:
            weight = st.manualWeight
        affinity = None
        sa = ctx.spec.session_affinity
        if sa is not None and weight > 0 and st.sessionAffinityCookie:
            affinity = (sa.cookie_name, st.sessionAffinityCookie, sa.max_age_seconds)
        return routes.RouteState(canary_weight=weight, header_routes=tuple(headers.items()),
                                 ab_match=ab, mirror_percentage=mirror,
                                 affinity_cookie=affinity)

    async def _virtual_service(self, ctx: Context, st: CanaryStatus) -> Resource:
        if not st.virtualService:
            raise TargetError("no VirtualService recorded for this Canary")
        ns = st.virtualServiceNamespace or ctx.namespace
        vs = await self._get(VS_KIND, ns, st.virtualService)
        if vs is None:
            raise TargetError(f"VirtualService {ns}/{st.virtualService} (the one this "
                              "Canary manages) no longer exists")
        return vs

    async def _write(self, ctx: Context, st: CanaryStatus,
                     state: routes.RouteState | str) -> bool:
        """One VirtualService write (`state`, or "promoted" / "rolled-back"); then wait for
        the ACK (stepState sync). A conflicting concurrent edit is retried on the next
        tick, never overwritten."""
        vs = await self._virtual_service(ctx, st)
        kw = {"namespace": vs.namespace, "vs_name": vs.name}
        try:
            if state == "promoted":
                body = routes.promoted(vs.body, ctx.spec, ctx.name, **kw)
            elif state == "rolled-back":
                body = routes.rolled_back(vs.body, ctx.spec, ctx.name, **kw)
            else:
                assert isinstance(state, routes.RouteState)
                body = routes.apply_state(vs.body, ctx.spec, ctx.name, state, **kw)
        except routes.RouteError as e:
            raise TargetError(str(e)) from None
        try:
            stored = await asyncio.to_thread(
                self.store.update, vs.with_(body=body, resource_version=vs.resource_version))
        except Conflict:
            return False
        st.appliedRevision = stored.resource_version
        st.ackedVersion = None
        st.stepState = SYNC
        st.error = None
        return True

    def _synced(self, st: CanaryStatus) -> str | None:
        if self._sync is None:
            return "none"
        version = self._sync.synced_at(st.appliedRevision or 0)
        if version == "none" and self._started is not None and \
                (self._clock() - self._started).total_seconds() < RECONNECT_GRACE:
            # Just (re)started and no proxy connected yet: they are reconnecting, and a
            # dwell that started now would be judged on traffic nobody reported.
            return None
        return version

    # --- phases -------------------------------------------------------------------------------

    async def _initialize(self, ctx: Context, st: CanaryStatus) -> bool:
        """First sight of a Canary: find (or create) its VirtualService; touch no weights."""
        items = await asyncio.to_thread(self.store.list, VS_KIND)
        vs = routes.find_virtual_service(ctx.name, ctx.namespace, ctx.spec, items)
        note = ""
        if vs is None:
            if ctx.spec.virtual_service:
                raise TargetError(f"VirtualService {ctx.namespace}/"
                                  f"{ctx.spec.virtual_service} (spec.virtualService) does "
                                  "not exist")
            obj = routes.new_virtual_service(ctx.name, ctx.namespace, ctx.spec)
            from ..api.decode import decode
            from ..controlplane.apply import documents_from_json

            decoded = decode(documents_from_json([obj]), namespace=ctx.namespace)
            decoded.raise_for_errors()
            try:
                vs = await asyncio.to_thread(self.store.create, decoded.resources[0])
            except Exception as e:
                raise TargetError(f"cannot create VirtualService {ctx.name}: {e}") from None
            st.createdVirtualService = True
            note = (f"; no VirtualService routed {ctx.spec.host}, so VirtualService "
                    f"{vs.namespace}/{vs.name} was created (stable 100 %)")
        st.virtualService, st.virtualServiceNamespace = vs.name, vs.namespace
        st.observedGeneration = ctx.res.generation
        st.stepCount = len(ctx.steps)
        self._set_phase(st, INITIALIZED, f"initialized: manages VirtualService "
                                         f"{vs.namespace}/{vs.name}{note}")
        self._event(ctx, "Initialized", st.message)
        return True

    async def _maybe_start(self, ctx: Context, st: CanaryStatus) -> bool:
        forced = st.gates.get("start", False)
        target = self.target(ctx)
        st.target = target.to_status()
        st.error = None
        if target.canary_workloads == 0 and not forced:
            labels = ",".join(f"{k}={v}" for k, v in sorted(target.canary_labels.items()))
            message = (f"waiting for workloads of canary subset {ctx.spec.canary_subset} "
                       f"({labels}) of {target.host}")
            if st.message != message:
                st.message = message
            return False
        if not forced:
            open_, why = await self._gate(ctx, st, CONFIRM_ROLLOUT)
            if not open_:
                return self._wait_gate(ctx, st, WAITING, CONFIRM_ROLLOUT, why)
        self._begin_rollout(ctx, st, "forced by `start`" if forced else
                            f"canary subset {ctx.spec.canary_subset} has "
                            f"{target.canary_workloads} workload(s)")
        return True

    def _begin_rollout(self, ctx: Context, st: CanaryStatus, why: str) -> None:
        now = rfc3339(self._clock())
        st.rollout += 1
        st.stepIndex = st.iterations = st.checkRounds = 0
        st.failedChecks = st.consecutiveFailures = st.inconclusiveChecks = 0
        st.stepState, st.stepStartedAt, st.ackedVersion = PRE, None, None
        st.startedAt = st.progressAt = now
        st.checks, st.gates = [], {}
        st.waitingFor = st.pausedFrom = st.retryAt = None
        st.manualWeight = None
        st.sessionAffinityCookie = (_cookie_value() if ctx.spec.session_affinity is not None
                                    else None)
        st.stepCount = len(ctx.steps)
        self._set_phase(st, PROGRESSING, f"rollout {st.rollout} started ({why})")
        plan = ", ".join(s.describe() for s in ctx.steps)
        self._event(ctx, "Started", f"rollout {st.rollout}: {why}; plan: {plan}")

    async def _gate(self, ctx: Context, st: CanaryStatus, gate: str) -> tuple[bool, str]:
        """A confirm-* gate: open if a user opened it (one-shot) or every hook of that type
        answers 2xx (no hook: open)."""
        if st.gates.pop(gate, False):
            return True, "opened by user"
        results = await self._call(ctx, st, gate)
        closed = [r for r in results if not r.ok]
        if closed:
            return False, "; ".join(f"webhook {r.name}: {r.message}" for r in closed)
        return True, "webhooks approved" if results else "no gate"

    def _wait_gate(self, ctx: Context, st: CanaryStatus, phase: str, gate: str,
                   why: str) -> bool:
        st.waitingFor = gate
        st.retryAt = rfc3339(self._clock() + timedelta(seconds=ctx.interval))
        message = (f"waiting for {gate}: {why} (open it with `meshpilot canary promote "
                   f"{ctx.name}`)")
        if st.phase != phase or st.message != message:
            self._event(ctx, "Waiting", message)
        self._set_phase(st, phase, message)
        return True

    async def _poll_gate(self, ctx: Context, st: CanaryStatus) -> bool:
        """Waiting / WaitingPromotion: ask the gate again every interval; rollback hooks
        are honoured here too (Flagger)."""
        gate = st.waitingFor or (CONFIRM_PROMOTION if st.phase == WAITING_PROMOTION
                                 else CONFIRM_ROLLOUT)
        opened_by_user = st.gates.get(gate, False)
        retry = parse_time(st.retryAt)
        if not opened_by_user and retry is not None and self._clock() < retry:
            return False
        if await self._rollback_hooks(ctx, st):
            return True
        open_, why = await self._gate(ctx, st, gate)
        if not open_:
            self._wait_gate(ctx, st, st.phase, gate, why)
            return False
        st.waitingFor = st.retryAt = None
        self._event(ctx, "GateOpened", f"{gate} opened: {why}")
        if gate == CONFIRM_ROLLOUT:
            self._begin_rollout(ctx, st, f"{gate} {why}")
        elif gate == CONFIRM_PROMOTION:
            self._start_promotion(ctx, st, f"{gate} {why}")
        else:
            st.gates[gate] = True  # consumed by the weight increase it held
            st.progressAt = rfc3339(self._clock())
            self._set_phase(st, PROGRESSING, f"{gate} {why}")
        return True

    async def _call(self, ctx: Context, st: CanaryStatus, hook_type: str,
                    phase: str | None = None) -> list[HookResult]:
        if not any(h.type == hook_type for h in ctx.spec.webhooks):
            return []
        return await self._hooks(ctx.spec.webhooks, hook_type, name=ctx.name,
                                 namespace=ctx.namespace, phase=phase or st.phase,
                                 checksum=ctx.checksum(st.rollout))

    async def _rollback_hooks(self, ctx: Context, st: CanaryStatus) -> bool:
        """Flagger's rollback hook: a 2xx answer means "roll back now"."""
        for r in await self._call(ctx, st, "rollback"):
            if r.ok:
                self._begin_rollback(ctx, st, f"rollback webhook {r.name} invoked: {r.message}")
                return True
        return False

    def _check_deadline(self, ctx: Context, st: CanaryStatus, doing: str) -> bool:
        since = parse_time(st.progressAt)
        if since is None:
            return False
        if (self._clock() - since).total_seconds() <= ctx.deadline:
            return False
        self._begin_rollback(ctx, st, f"progress deadline exceeded: no progress for "
                                      f"{ctx.spec.analysis.progress_deadline} ({doing})")
        return True

    async def _progress(self, ctx: Context, st: CanaryStatus) -> bool:
        now = self._clock()
        if st.stepState == PRE:
            return await self._pre_rollout(ctx, st)
        if st.stepIndex >= len(ctx.steps):
            return await self._finish_steps(ctx, st)
        step = ctx.steps[st.stepIndex]
        if st.stepState in ("", APPLY):
            desired = self.route_state(ctx, st)
            if step.action == "setWeight" and desired.canary_weight > st.canaryWeight:
                open_, why = await self._gate(ctx, st, CONFIRM_TRAFFIC)
                if not open_:
                    return self._wait_gate(ctx, st, WAITING, CONFIRM_TRAFFIC, why)
            if not await self._write(ctx, st, desired):
                return False
            if desired.canary_weight != st.canaryWeight:
                self._event(ctx, "Weight", f"{step.describe()}: canary weight "
                                      f"{st.canaryWeight} -> {desired.canary_weight} "
                                      f"(revision {st.appliedRevision})",
                            revision=st.appliedRevision)
            st.canaryWeight = desired.canary_weight
            st.message = (f"step {st.stepIndex + 1}/{len(ctx.steps)} {step.describe()}: "
                          f"waiting for every Envoy to ACK revision {st.appliedRevision}")
            return True
        if st.stepState == SYNC:
            version = self._synced(st)
            if version is None:
                return self._check_deadline(
                    ctx, st, f"Envoy never ACKed revision {st.appliedRevision}")
            fresh = st.ackedRevision != st.appliedRevision
            st.ackedVersion, st.ackedRevision = version, st.appliedRevision
            st.stepState, st.stepStartedAt = DWELL, rfc3339(now)
            st.message = (f"step {st.stepIndex + 1}/{len(ctx.steps)} {step.describe()}: "
                          f"weight {st.canaryWeight} ACKed (version {version})")
            if fresh:
                self._event(ctx, "Synced", f"revision {st.appliedRevision} ACKed by every "
                                           f"Envoy (version {version}); step "
                                           f"{st.stepIndex + 1} {step.describe()}",
                            version=version, revision=st.appliedRevision)
            return True
        # DWELL
        started = parse_time(st.stepStartedAt) or now
        if step.action == "pause":
            if step.duration is None:
                st.pausedFrom, st.waitingFor = "pause-step", "pause"
                self._set_phase(st, PAUSED, f"step {st.stepIndex + 1}/{len(ctx.steps)}: paused "
                                            f"until `meshpilot canary resume {ctx.name}`")
                self._event(ctx, "Paused", st.message)
                return True
            if now < started + timedelta(seconds=step.duration):
                return False
            self._complete_step(ctx, st, "pause over")
            return True
        if step.action in ("analysis", "iteration"):
            if now < started + timedelta(seconds=ctx.interval):
                return self._check_deadline(ctx, st, "checks holding the weight")
            return await self._analyse(ctx, st, step)
        self._complete_step(ctx, st, "applied")
        return True

    async def _pre_rollout(self, ctx: Context, st: CanaryStatus) -> bool:
        retry = parse_time(st.retryAt)
        if retry is not None and self._clock() < retry:
            return False
        failed = [r for r in await self._call(ctx, st, "pre-rollout") if not r.ok]
        if failed:
            entries = [self._hook_entry(r) for r in failed]
            st.checks = entries
            st.checkRounds += 1
            st.failedChecks += 1
            st.consecutiveFailures += 1
            why = f"pre-rollout webhook {failed[0].name} failed: {failed[0].message}"
            if self._limit_reached(ctx, st):
                self._begin_rollback(ctx, st, f"failed checks threshold reached "
                                              f"{st.failedChecks}: {why}")
                return True
            st.retryAt = rfc3339(self._clock() + timedelta(seconds=ctx.interval))
            st.message = f"{why} (failed checks {st.failedChecks}/" \
                         f"{ctx.spec.analysis.failure_limit}); retrying"
            self._event(ctx, "PreRolloutFailed", st.message, "Warning")
            return False
        st.retryAt = None
        st.stepState = APPLY
        return True

    def _complete_step(self, ctx: Context, st: CanaryStatus, why: str) -> None:
        step = ctx.steps[st.stepIndex]
        if step.action == "iteration":
            st.iterations += 1
        st.message = f"step {st.stepIndex + 1}/{len(ctx.steps)} {step.describe()}: {why}"
        st.stepIndex += 1
        st.stepState, st.stepStartedAt = APPLY, None
        st.progressAt = rfc3339(self._clock())

    async def _finish_steps(self, ctx: Context, st: CanaryStatus) -> bool:
        """After the last step: the confirm-promotion gate, then promotion."""
        if await self._rollback_hooks(ctx, st):
            return True
        open_, why = await self._gate(ctx, st, CONFIRM_PROMOTION)
        if not open_:
            return self._wait_gate(ctx, st, WAITING_PROMOTION, CONFIRM_PROMOTION, why)
        self._start_promotion(ctx, st, f"all {len(ctx.steps)} steps passed")
        return True

    def _start_promotion(self, ctx: Context, st: CanaryStatus, why: str) -> None:
        st.stepState, st.stepStartedAt, st.waitingFor = APPLY, None, None
        self._set_phase(st, PROMOTING, f"promoting: {why}")
        self._event(ctx, "Promoting", st.message)

    # --- checks ---------------------------------------------------------------------------

    @staticmethod
    def _hook_entry(r: HookResult) -> dict[str, Any]:
        return {"name": f"webhook {r.name}", "value": r.status, "threshold": "2xx",
                "requests": None, "verdict": "fail", "outcome": "fail", "message": r.message}

    def _limit_reached(self, ctx: Context, st: CanaryStatus) -> bool:
        a = ctx.spec.analysis
        return st.failedChecks >= a.failure_limit or (
            a.consecutive_failure_limit is not None
            and st.consecutiveFailures >= a.consecutive_failure_limit)

    async def run_round(self, ctx: Context, target: Target) -> list[CheckResult]:
        if ctx.spec.skip_analysis or not ctx.spec.analysis.metrics:
            return []
        return await self._checks(ctx.spec.analysis.metrics, target.analysis(),
                                  self._metrics, ctx.interval)

    def _entry(self, ctx: Context, r: CheckResult) -> dict[str, Any]:
        """A check as stored in status.checks, with what the controller made of it."""
        metric = next((m for m in ctx.spec.analysis.metrics if m.name == r.name), None)
        outcome = r.verdict
        if r.verdict == "error":
            outcome = "fail"
        elif r.verdict == "no-data":
            policy = metric.effective_no_traffic if metric is not None else "fail"
            outcome = {"fail": "fail", "hold": "inconclusive", "pass": "pass"}[policy]
        return {"name": r.name, "value": r.value, "threshold": r.threshold,
                "requests": r.requests, "verdict": r.verdict, "outcome": outcome,
                "message": r.message, "baseline": r.baseline,
                "time": rfc3339(self._clock())}

    async def _analyse(self, ctx: Context, st: CanaryStatus, step: Step) -> bool:
        """End of a dwell: rollback hooks, rollout hooks, then every check; the results and
        the decision are persisted together (see the module docstring)."""
        if await self._rollback_hooks(ctx, st):
            return True
        entries = [self._hook_entry(r) for r in await self._call(ctx, st, "rollout")
                   if not r.ok]
        target = self.target(ctx)
        st.target = target.to_status()
        entries += [self._entry(ctx, r) for r in await self.run_round(ctx, target)]
        st.checks = entries
        st.checkRounds += 1
        failed = [e for e in entries if e["outcome"] == "fail"]
        held = [e for e in entries if e["outcome"] == "inconclusive"]
        where = f"step {st.stepIndex + 1}/{len(ctx.steps)} {step.describe()}"
        data = {"checks": entries, "round": st.checkRounds}
        if failed:
            st.failedChecks += 1
            st.consecutiveFailures += 1
            first = failed[0]
            why = f"check {first['name']} failed: {first['message']}"
            if first.get("value") is not None:
                why += f" (value {_number(float(first['value']))}, threshold " \
                       f"{first['threshold']}, requests {first['requests']})"
            self._event(ctx, "CheckFailed", f"{where}: {why}", "Warning", **data)
            if self._limit_reached(ctx, st):
                a = ctx.spec.analysis
                limit = (f"failed checks threshold reached {st.failedChecks}"
                         if st.failedChecks >= a.failure_limit else
                         f"consecutive failed checks limit reached {st.consecutiveFailures}")
                self._begin_rollback(ctx, st, f"{limit}: {why}")
                return True
            st.stepStartedAt = rfc3339(self._clock())
            st.message = (f"{where}: holding weight {st.canaryWeight}: {why} (failed checks "
                          f"{st.failedChecks}/{ctx.spec.analysis.failure_limit})")
            return True
        st.consecutiveFailures = 0
        if held:
            st.inconclusiveChecks += 1
            why = f"check {held[0]['name']} inconclusive: {held[0]['message']}"
            self._event(ctx, "CheckInconclusive", f"{where}: {why}", "Warning", **data)
            limit = ctx.spec.analysis.inconclusive_limit
            if limit and st.inconclusiveChecks >= limit:
                st.pausedFrom, st.waitingFor = "inconclusive", "resume"
                self._set_phase(st, PAUSED, f"{where}: paused after {st.inconclusiveChecks} "
                                            f"inconclusive checks: {why}; `meshpilot canary "
                                            f"resume {ctx.name}` to go on")
                self._event(ctx, "Paused", st.message)
                return True
            st.stepStartedAt = rfc3339(self._clock())
            st.message = f"{where}: holding weight {st.canaryWeight}: {why}"
            return True
        summary = "; ".join(e["message"] for e in entries) or "no checks configured"
        self._event(ctx, "CheckPassed", f"{where}: passed: {summary}", **data)
        self._complete_step(ctx, st, f"passed ({summary})")
        return True

    # --- promotion and rollback -----------------------------------------------------------

    async def _promote(self, ctx: Context, st: CanaryStatus) -> bool:
        if st.phase == PROMOTING:
            if not await self._write(ctx, st, "promoted"):
                return False
            st.canaryWeight = 100
            self._set_phase(st, FINALISING, f"finalising: canary subset "
                                            f"{ctx.spec.canary_subset} is the destination "
                                            f"(revision {st.appliedRevision}); waiting for "
                                            "every Envoy's ACK")
            self._event(ctx, "Finalising", st.message, revision=st.appliedRevision)
            return True
        version = self._synced(st)
        if version is None:
            return False
        st.ackedVersion, st.ackedRevision = version, st.appliedRevision
        st.stepState, st.stepStartedAt = "", rfc3339(self._clock())
        self._set_phase(st, SUCCEEDED, f"promotion finished: {ctx.spec.canary_subset} serves "
                                       f"100 % (ACKed version {version})")
        self._event(ctx, "Succeeded", st.message, version=version)
        await self._post_rollout(ctx, st)
        return True

    def _begin_rollback(self, ctx: Context, st: CanaryStatus, reason: str, *,
                        undo: bool = False) -> None:
        st.stepState, st.ackedVersion = APPLY, None
        st.waitingFor = st.pausedFrom = st.retryAt = None
        st.manualWeight = None
        st.gates = {"undo": True} if undo else {}
        self._set_phase(st, FAILED, ("undo" if undo else "rolled back") + f": {reason}")
        self._event(ctx, "Undo" if undo else "RollingBack", st.message, "Warning")

    async def _rollback(self, ctx: Context, st: CanaryStatus) -> bool:
        if st.stepState in ("", DWELL):
            return False  # done (and verified)
        if st.stepState == APPLY:
            if not await self._write(ctx, st, "rolled-back"):
                return False
            st.canaryWeight = 0
            self._event(ctx, "RollbackWritten", f"stable {ctx.spec.stable_subset} 100 %, managed "
                                           f"routes removed (revision {st.appliedRevision})",
                        revision=st.appliedRevision)
            return True
        version = self._synced(st)
        if version is None:
            return False
        st.ackedVersion, st.ackedRevision = version, st.appliedRevision
        st.stepState, st.stepStartedAt = "", rfc3339(self._clock())
        self._event(ctx, "RollbackVerified", f"rollback ACKed by every Envoy (version {version})",
                    version=version)
        if not st.gates.pop("undo", False):
            await self._post_rollout(ctx, st)
        return True

    async def _post_rollout(self, ctx: Context, st: CanaryStatus) -> None:
        for r in await self._call(ctx, st, "post-rollout"):
            self._event(ctx, "PostRollout", f"post-rollout webhook {r.name}: {r.message}",
                        "Normal" if r.ok else "Warning")

    async def _paused(self, ctx: Context, st: CanaryStatus) -> bool:
        """Paused holds the weight; a `set-weight` is written and ACK-verified here."""
        if st.stepState == APPLY:
            desired = self.route_state(ctx, st, min(st.stepIndex, len(ctx.steps) - 1))
            if not await self._write(ctx, st, desired):
                return False
            if st.canaryWeight != desired.canary_weight:
                self._event(ctx, "Weight", f"canary weight {st.canaryWeight} -> "
                                      f"{desired.canary_weight} (revision "
                                      f"{st.appliedRevision})", revision=st.appliedRevision)
            st.canaryWeight = desired.canary_weight
            return True
        if st.stepState == SYNC:
            version = self._synced(st)
            if version is None:
                return False
            st.ackedVersion, st.ackedRevision = version, st.appliedRevision
            st.stepState, st.stepStartedAt = DWELL, rfc3339(self._clock())
            self._event(ctx, "Synced", f"revision {st.appliedRevision} ACKed by every Envoy "
                                  f"(version {version})", version=version)
            return True
        return False

    # --- actions --------------------------------------------------------------------------

    async def act(self, namespace: str, name: str, action: str,
                  body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A user's action (REST/CLI); returns the Canary's new status. Raises ActionError
        (409) when the phase does not allow it."""
        if action not in ACTIONS:
            raise ActionError(404, f"unknown action {action!r}; one of: {', '.join(ACTIONS)}")
        body = body or {}
        async with self._lock(namespace, name):
            res = await self._get(KIND, namespace, name)
            if res is None:
                raise ActionError(404, f'canary "{name}" not found in namespace {namespace}')
            try:
                ctx = self._context(res)
            except ValidationError as e:
                raise ActionError(409, f"the Canary's spec is invalid: {e}") from None
            st = CanaryStatus.from_dict(res.status)
            if not st.phase:
                raise ActionError(409, "the controller has not initialized this Canary yet; "
                                       "try again in a moment")
            message = self._apply_action(ctx, st, action, body)
            self._event(ctx, "Action", f"{action} by user: {message}", action=action)
            await self._save(ctx, st)
        self._wake({(namespace, name)}, False)
        return {"action": action, "message": message, "status": st.to_dict()}

    def _apply_action(self, ctx: Context, st: CanaryStatus, action: str,
                      body: dict[str, Any]) -> str:
        now = rfc3339(self._clock())
        phase = st.phase
        active = st.active

        def refuse(why: str) -> ActionError:
            return ActionError(409, f"cannot {action} canary {ctx.name} in phase {phase}: "
                                    f"{why}")

        if action == "start":
            if active:
                raise refuse("a rollout is already running (abort or undo it first)")
            st.gates = {"start": True}
            if phase != INITIALIZED:
                st.observedGeneration = ctx.res.generation
                self._set_phase(st, INITIALIZED, "start requested")
            return "the rollout starts now (workload and confirm-rollout checks skipped)"
        if action == "promote":
            if body.get("full"):
                if phase in (PROMOTING, FINALISING, SUCCEEDED) or not active:
                    raise refuse("nothing to promote (start a rollout first)")
                st.manualWeight = None
                self._start_promotion(ctx, st, "full promotion requested by user (remaining "
                                          "steps, checks and gates skipped)")
                return "promoting now"
            if phase == PAUSED:
                return self._resume_from_pause(ctx, st)
            if phase in (WAITING, WAITING_PROMOTION):
                gate = st.waitingFor or CONFIRM_PROMOTION
                st.gates[gate] = True
                st.retryAt = None
                return f"gate {gate} opened"
            if phase == PROGRESSING:
                if st.stepState == PRE:
                    st.stepState, st.retryAt = APPLY, None
                    return "pre-rollout hooks skipped"
                if st.stepIndex >= len(ctx.steps):
                    return "promotion is next"
                step = ctx.steps[st.stepIndex]
                self._complete_step(ctx, st, "skipped by user")
                return f"step {st.stepIndex}/{len(ctx.steps)} {step.describe()} skipped"
            if phase == INITIALIZED:
                st.gates = {"start": True}
                return "the rollout starts now"
            raise refuse("no gate or pause to open")
        if action == "pause":
            if phase not in (PROGRESSING, WAITING, WAITING_PROMOTION):
                raise refuse("only a running rollout can be paused")
            st.pausedFrom, st.waitingFor = "user", "resume"
            self._set_phase(st, PAUSED, f"paused by user at weight {st.canaryWeight}; "
                                        f"`meshpilot canary resume {ctx.name}` to go on")
            return "paused"
        if action == "resume":
            if phase != PAUSED:
                raise refuse("it is not paused")
            return self._resume_from_pause(ctx, st)
        if action in ("abort", "rollback"):
            if not active:
                raise refuse("no rollout is running (use undo to return to stable)")
            reason = str(body.get("reason") or "").strip()
            why = ("aborted by user" if action == "abort" else
                   "rollback requested by user" + (f": {reason}" if reason else ""))
            self._begin_rollback(ctx, st, why)
            return why
        if action == "undo":
            self._begin_rollback(ctx, st, f"back to stable {ctx.spec.stable_subset} 100 % "
                                          "(no analysis, no hooks)", undo=True)
            return f"routing 100 % to stable {ctx.spec.stable_subset}"
        if action == "retry":
            if phase != FAILED:
                raise refuse("only a Failed rollout can be retried")
            self._begin_rollout(ctx, st, "retry requested by user")
            return f"rollout {st.rollout} starts from step 1"
        # set-weight
        weight = body.get("weight")
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 100:
            raise ActionError(400, 'set-weight needs {"weight": N} with N in 0..100')
        if phase in (PROMOTING, FINALISING):
            raise refuse("the promotion is being written")
        if not active:
            self._begin_rollout(ctx, st, f"manual weight {weight}")
            st.stepState = APPLY
        st.manualWeight = weight
        st.stepState, st.ackedVersion = APPLY, None
        st.pausedFrom, st.waitingFor = "set-weight", "resume"
        st.progressAt = now
        self._set_phase(st, PAUSED, f"manual weight {weight} (automation paused; "
                                    f"`meshpilot canary resume {ctx.name}` continues the "
                                    "plan, `undo` returns to stable)")
        return f"canary weight {weight}"

    def _resume_from_pause(self, ctx: Context, st: CanaryStatus) -> str:
        reason = st.pausedFrom
        st.pausedFrom = st.waitingFor = None
        st.manualWeight = None
        st.inconclusiveChecks = 0
        st.progressAt = rfc3339(self._clock())
        if reason == "pause-step" and st.stepIndex < len(ctx.steps):
            self._complete_step(ctx, st, "resumed by user")
        else:
            st.stepState, st.stepStartedAt, st.ackedVersion = APPLY, None, None
        self._set_phase(st, PROGRESSING, f"resumed at step {st.stepIndex + 1}/"
                                         f"{len(ctx.steps)}")
        return "resumed"

    # --- analysis on demand and history ----------------------------------------------------

    async def analyze(self, namespace: str, name: str) -> dict[str, Any]:
        """Run the Canary's checks once now (`meshpilot canary analyze`); changes nothing."""
        res = await self._get(KIND, namespace, name)
        if res is None:
            raise ActionError(404, f'canary "{name}" not found in namespace {namespace}')
        ctx = self._context(res)
        try:
            target = self.target(ctx)
        except TargetError as e:
            raise ActionError(409, str(e)) from None
        results = [self._entry(ctx, r) for r in await self.run_round(ctx, target)]
        seconds = max(1, int(ctx.interval))
        summaries = {}
        for role, version in (("canary", target.canary_version),
                              ("stable", target.stable_version)):
            s = self._metrics.window_summary(target.service_name, version=version,
                                             namespace=target.service_namespace,
                                             reporter="destination", seconds=seconds,
                                             quantile=0.95)
            summaries[role] = {"version": version, "requests": s.requests,
                               "successRate": (None if s.success_rate is None
                                               else s.success_rate * 100),
                               "p95Ms": s.latency_ms, "seconds": s.seconds}
        if any(e["verdict"] in ("fail", "error") for e in results):
            verdict = "fail"
        elif any(e["verdict"] == "no-data" for e in results) or (
                not results and summaries["canary"]["requests"] == 0):
            verdict = "no-data"
        else:
            verdict = "pass"
        return {"verdict": verdict, "checks": results, "summary": summaries,
                "target": target.to_status()}

    async def events(self, namespace: str, name: str, limit: int = 50) -> list[dict[str, Any]]:
        entries = await asyncio.to_thread(self.store.events, KIND, namespace, name,
                                          limit=limit)
        return [e.to_dict() for e in entries]

    # --- metrics ----------------------------------------------------------------------------

    def metrics_lines(self) -> list[str]:
        """meshpilot_canary_* series for /metrics (see telemetry.prometheus)."""
        from ..telemetry.prometheus import escape

        out = ["# HELP meshpilot_canary_phase Canary phase (1 for the current one).",
               "# TYPE meshpilot_canary_phase gauge"]
        items = sorted(self._seen.items())
        for (ns, name), (st, _) in items:
            for phase in PHASES:
                out.append(f'meshpilot_canary_phase{{name="{escape(name)}",namespace='
                           f'"{escape(ns)}",phase="{phase}"}} {int(st.phase == phase)}')
        out += ["# HELP meshpilot_canary_weight Canary subset weight (%) on the default route.",
                "# TYPE meshpilot_canary_weight gauge"]
        for (ns, name), (st, _) in items:
            out.append(f'meshpilot_canary_weight{{name="{escape(name)}",namespace='
                       f'"{escape(ns)}"}} {st.canaryWeight}')
        out += ["# HELP meshpilot_canary_failed_checks Failed check rounds in this rollout.",
                "# TYPE meshpilot_canary_failed_checks gauge"]
        for (ns, name), (st, _) in items:
            out.append(f'meshpilot_canary_failed_checks{{name="{escape(name)}",namespace='
                       f'"{escape(ns)}"}} {st.failedChecks}')
        values, mins, maxes = [], [], []
        for (ns, name), (st, spec) in items:
            base = f'name="{escape(name)}",namespace="{escape(ns)}"'
            for check in st.checks:
                if isinstance(check.get("value"), int | float) and \
                        not str(check.get("name", "")).startswith("webhook "):
                    values.append(f'meshpilot_canary_check_value{{{base},metric='
                                  f'"{escape(check["name"])}"}} {float(check["value"])!r}')
            for metric in (spec.analysis.metrics if spec is not None else []):
                tr = metric.threshold_range
                label = f'{base},metric="{escape(metric.name)}"'
                if tr is not None and tr.min is not None:
                    mins.append(f"meshpilot_canary_check_threshold_min{{{label}}} "
                                f"{float(tr.min)!r}")
                if tr is not None and tr.max is not None:
                    maxes.append(f"meshpilot_canary_check_threshold_max{{{label}}} "
                                 f"{float(tr.max)!r}")
        out += ["# HELP meshpilot_canary_check_value Last value of each canary check.",
                "# TYPE meshpilot_canary_check_value gauge", *values,
                "# HELP meshpilot_canary_check_threshold_min Lower bound of a canary check.",
                "# TYPE meshpilot_canary_check_threshold_min gauge", *mins,
                "# HELP meshpilot_canary_check_threshold_max Upper bound of a canary check.",
                "# TYPE meshpilot_canary_check_threshold_max gauge", *maxes]
        return out
