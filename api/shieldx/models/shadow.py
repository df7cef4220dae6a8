"""Request and response bodies of the shadow-evaluation routes (msgspec structs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class RuleIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str


class Rule(msgspec.Struct):
    rule_id: str
    name: str
    created_at: datetime
    replayed: bool


class RuleVersionIn(msgspec.Struct, forbid_unknown_fields=True):
    definition: dict[str, Any]


class RuleVersion(msgspec.Struct):
    rule_id: str
    version: int
    definition: dict[str, Any]
    created_at: datetime
    replayed: bool


class ExperimentIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    rule_id: str
    champion_version: int
    challenger_version: int
    actor: str
    metric: str = "success_rate"
    steps: list[float] = msgspec.field(default_factory=lambda: [1.0, 5.0, 25.0, 50.0, 100.0])
    min_obs_per_step: int = 1000
    min_step_seconds: float = 600.0
    max_error_rate: float | None = 0.05
    max_error_rate_increase: float | None = 0.01
    max_p95_ms: float | None = None
    max_p95_ratio: float | None = 1.25
    guardrail_min_obs: int = 100
    breach_limit: int = 1
    breach_mode: str = "consecutive"


class ExperimentCreated(msgspec.Struct):
    experiment_id: int
    state: str
    step_no: int
    weight: float
    created_at: datetime
    replayed: bool


class ExperimentSummary(msgspec.Struct):
    experiment_id: int
    name: str
    rule_id: str
    state: str
    step_no: int
    weight: float
    created_at: datetime


class ExperimentPage(msgspec.Struct):
    items: list[ExperimentSummary]
    next_cursor: int | None  # pass back as ?cursor= for the next page; null on the last one


class Arm(msgspec.Struct):
    n: int
    successes: int
    alpha: int
    beta: int
    ci_low: float | None
    ci_high: float | None


class ExperimentStatus(msgspec.Struct):
    experiment_id: int
    name: str
    rule_id: str
    champion_version: int
    challenger_version: int
    metric: str
    state: str
    steps: list[float]
    step_no: int
    weight: float
    step_started_at: datetime
    config: dict[str, Any]
    breaches: int
    breaches_total: int
    champion: Arm
    challenger: Arm
    p_challenger_better: float | None
    expected_loss_champion: float | None
    expected_loss_challenger: float | None
    lift: float | None
    decision: str
    log_lr_better: float | None
    log_lr_worse: float | None
    guardrail_status: str
    guardrails: dict[str, Any] | None
    evaluated_at: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> ExperimentStatus:
        arms = {
            side: Arm(
                n=r[f"{side}_n"],
                successes=r[f"{side}_successes"],
                alpha=r[f"{side}_alpha"],
                beta=r[f"{side}_beta"],
                ci_low=r[f"{side}_ci_low"],
                ci_high=r[f"{side}_ci_high"],
            )
            for side in ("champion", "challenger")
        }
        values: dict[str, Any] = {k: r[k] for k in cls.__struct_fields__ if k in r}
        values.update(arms)
        return cls(**values)


class ObservationIn(msgspec.Struct, forbid_unknown_fields=True):
    arm: str
    success: bool
    latency_ms: float
    error: bool = False
    unit_id: str | None = None


class ObservationBatchIn(msgspec.Struct, forbid_unknown_fields=True):
    observations: list[ObservationIn]


class ObservationsRecorded(msgspec.Struct):
    batch_id: int
    experiment_id: int
    accepted: int
    step_no: int
    created_at: datetime
    replayed: bool


class Assignment(msgspec.Struct):
    experiment_id: int
    unit_id: str
    arm: str
    bucket: int
    weight: float
    step_no: int
    state: str


class ActionIn(msgspec.Struct, forbid_unknown_fields=True):
    actor: str
    reason: str


class Action(msgspec.Struct):
    event_id: int
    experiment_id: int
    kind: str
    state: str
    weight: float
    actor: str
    reason: str
    created_at: datetime
    replayed: bool


class Event(msgspec.Struct):
    event_id: int
    kind: str
    from_state: str | None
    to_state: str
    from_weight: float | None
    to_weight: float
    step_no: int
    actor: str
    reason: str
    evidence: dict[str, Any]
    created_at: datetime


class EventPage(msgspec.Struct):
    items: list[Event]
    next_cursor: int | None  # pass back as ?cursor= for the next page; null on the last one
