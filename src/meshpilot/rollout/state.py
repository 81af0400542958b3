"""The canary controller's persisted state: `status` of a Canary, as plain data.

Everything the controller knows about a rollout lives here and is written through the
store's status subresource, so a restarted control plane resumes from it: the phase, the
step and where inside it (`stepState`: writing the route, waiting for the Envoy ACK, or
dwelling), the counters, the gates a user opened and the last check of every metric.
A check and its consequence (the counters and the next step) are one status write, so a
crash can neither lose a counted check nor count one twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

# Flagger's phase names, plus Argo's Paused.
INITIALIZED = "Initialized"
WAITING = "Waiting"  # a gate (confirm-rollout / confirm-traffic-increase) is closed
PROGRESSING = "Progressing"
PAUSED = "Paused"
WAITING_PROMOTION = "WaitingPromotion"
PROMOTING = "Promoting"
FINALISING = "Finalising"
SUCCEEDED = "Succeeded"
FAILED = "Failed"

PHASES = (INITIALIZED, WAITING, PROGRESSING, PAUSED, WAITING_PROMOTION, PROMOTING,
          FINALISING, SUCCEEDED, FAILED)
ACTIVE = frozenset({WAITING, PROGRESSING, PAUSED, WAITING_PROMOTION, PROMOTING, FINALISING})
TERMINAL = frozenset({SUCCEEDED, FAILED})

# Where the controller is inside a step (or a rollback/promotion write).
APPLY = "apply"  # the route state must be written (again)
SYNC = "sync"  # written at appliedRevision; waiting for every Envoy's ACK
DWELL = "dwell"  # ACKed at stepStartedAt; the step's dwell runs
PRE = "pre"  # pre-rollout hooks not passed yet (before any traffic moves)

# Gate names (Flagger's webhook types); `pause` is a `pause: {}` step or a user's pause.
CONFIRM_ROLLOUT = "confirm-rollout"
CONFIRM_TRAFFIC = "confirm-traffic-increase"
CONFIRM_PROMOTION = "confirm-promotion"


def now_utc() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """Millisecond RFC 3339 in UTC: dwell times of 1-2 s need sub-second precision."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class CanaryStatus:
    """`Canary.status` (camelCase in storage; see /tmp/rollout_interfaces.md)."""

    phase: str = ""
    message: str = ""
    canaryWeight: int = 0
    stepIndex: int = 0
    stepCount: int = 0
    stepState: str = ""
    iterations: int = 0
    failedChecks: int = 0
    consecutiveFailures: int = 0
    inconclusiveChecks: int = 0
    checkRounds: int = 0  # check rounds run in this rollout (each counted once)
    stepStartedAt: str | None = None
    lastTransitionTime: str | None = None
    appliedRevision: int | None = None
    ackedVersion: str | None = None
    ackedRevision: int | None = None  # the appliedRevision that ackedVersion carries
    gates: dict[str, bool] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    virtualService: str | None = None
    virtualServiceNamespace: str | None = None
    createdVirtualService: bool = False
    observedGeneration: int = 0
    rollout: int = 0  # rollout number of this Canary (1, 2, ...): the event log's key
    startedAt: str | None = None
    progressAt: str | None = None  # last progress, for progressDeadline
    waitingFor: str | None = None  # the closed gate (Waiting / WaitingPromotion / Paused)
    pausedFrom: str | None = None  # why Paused: pause-step, user, inconclusive, set-weight
    manualWeight: int | None = None
    retryAt: str | None = None  # next poll of a closed gate / failed pre-rollout hook
    sessionAffinityCookie: str | None = None
    target: dict[str, Any] = field(default_factory=dict)  # stable/canary versions, service
    error: str | None = None  # why the Canary cannot start (bad target), else None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> CanaryStatus:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def copy(self) -> CanaryStatus:
        return CanaryStatus.from_dict(self.to_dict())

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE
