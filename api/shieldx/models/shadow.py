"""Request and response bodies of the shadow-evaluation routes (msgspec structs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from .bounds import BIGINT_MAX, INT_MAX, Name, Version, documented

# shadow._check_text (SX007), shadow.create_experiment (SX405), shadow._check_observations (SX403).
Actor = Annotated[str, documented(minLength=1, maxLength=200)]
Fraction = Annotated[float, documented(minimum=0, maximum=1)]
Positive = Annotated[float, documented(exclusiveMinimum=0)]
AtLeastOne = Annotated[int, documented(minimum=1, maximum=INT_MAX)]
MAX_STEP_S = BIGINT_MAX // 1_000_000  # an interval counts microseconds in a bigint


class RuleIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name


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
    name: Name
    rule_id: str
    champion_version: Version
    challenger_version: Version
    actor: Actor
    metric: Annotated[str, documented(minLength=1, maxLength=100)] = "success_rate"
    # 1 to 20 traffic percentages in (0, 100], strictly increasing (the last, JSON Schema cannot state).
    steps: Annotated[
        list[float],
        documented(minItems=1, maxItems=20, items={"type": "number", "exclusiveMinimum": 0, "maximum": 100}),
    ] = msgspec.field(default_factory=lambda: [1.0, 5.0, 25.0, 50.0, 100.0])
    min_obs_per_step: Annotated[int, documented(minimum=1, maximum=BIGINT_MAX)] = 1000
    min_step_seconds: Annotated[float, documented(minimum=0, maximum=MAX_STEP_S)] = 600.0
    max_error_rate: Fraction | None = 0.05
    max_error_rate_increase: Fraction | None = 0.01
    max_p95_ms: Positive | None = None
    max_p95_ratio: Positive | None = 1.25
    guardrail_min_obs: AtLeastOne = 100
    breach_limit: AtLeastOne = 1
    breach_mode: Annotated[str, documented(enum=["consecutive", "cumulative"])] = "consecutive"


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
    arm: Annotated[str, documented(enum=["champion", "challenger"])]
    success: bool
    latency_ms: Annotated[float, documented(minimum=0, maximum=1e12)]
    error: bool = False
    unit_id: Annotated[str, documented(maxLength=200)] | None = None


class ObservationBatchIn(msgspec.Struct, forbid_unknown_fields=True):
    observations: Annotated[list[ObservationIn], documented(minItems=1, maxItems=10_000)]  # SX403, SX404


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
    actor: Actor
    reason: Annotated[str, documented(minLength=1, maxLength=1000)]


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
