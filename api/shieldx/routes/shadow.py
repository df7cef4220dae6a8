"""Shadow evaluation routes: thin wrappers over the shadow.* SQL functions.

Shadow evaluation is platform-wide (no tenant in the path): the routes declare
no roles, so the app-wide guard (shieldx/auth.py) admits the platform operator only.
"""

from __future__ import annotations

import msgspec
from litestar import Controller, Response, get, post, put

from ..models.bounds import PathId, RulePath, Text200Path
from ..models.shadow import (
    Action,
    ActionIn,
    Assignment,
    Event,
    EventPage,
    ExperimentCreated,
    ExperimentIn,
    ExperimentPage,
    ExperimentStatus,
    ExperimentSummary,
    ObservationBatchIn,
    ObservationsRecorded,
    Rule,
    RuleIn,
    RuleVersion,
    RuleVersionIn,
)
from .params import DB, REPLAY, ClampedLimit, Cursor, IdempotencyKey, created, next_cursor


class ShadowController(Controller):
    path = "/v1/shadow"
    tags = ["shadow"]

    @put(
        "/rules/{rule_id:str}",
        summary="Create a rule (idempotent by its id)",
        status_code=201,
        response_headers=REPLAY,
    )
    async def create_rule(self, rule_id: RulePath, data: RuleIn, db: DB) -> Response[Rule]:
        return created(Rule, await db.one("SELECT * FROM shadow.create_rule(%s, %s)", (rule_id, data.name)))

    @post(
        "/rules/{rule_id:str}/versions",
        summary="Add an immutable rule version",
        status_code=201,
        response_headers=REPLAY,
    )
    async def add_rule_version(
        self, rule_id: RulePath, data: RuleVersionIn, db: DB, idempotency_key: IdempotencyKey = None
    ) -> Response[RuleVersion]:
        row = await db.one(
            "SELECT * FROM shadow.add_rule_version(%s, %s::jsonb, %s)",
            (rule_id, msgspec.json.encode(data.definition).decode(), idempotency_key),
        )
        return created(RuleVersion, row)

    @post(
        "/experiments",
        summary="Start a champion/challenger experiment with a canary plan",
        status_code=201,
        response_headers=REPLAY,
    )
    async def create_experiment(
        self, data: ExperimentIn, db: DB, idempotency_key: IdempotencyKey = None
    ) -> Response[ExperimentCreated]:
        row = await db.one(
            """SELECT * FROM shadow.create_experiment(
                 p_name => %s, p_rule_id => %s, p_champion_version => %s::int, p_challenger_version => %s::int,
                 p_idem_key => %s, p_actor => %s, p_metric => %s, p_steps => %s::numeric[],
                 p_min_obs_per_step => %s::bigint, p_min_step_duration => make_interval(secs => %s::float8),
                 p_max_error_rate => %s::float8, p_max_error_rate_increase => %s::float8,
                 p_max_p95_ms => %s::float8, p_max_p95_ratio => %s::float8, p_guardrail_min_obs => %s::int,
                 p_breach_limit => %s::int, p_breach_mode => %s)""",
            (
                data.name,
                data.rule_id,
                data.champion_version,
                data.challenger_version,
                idempotency_key,
                data.actor,
                data.metric,
                data.steps,
                data.min_obs_per_step,
                data.min_step_seconds,
                data.max_error_rate,
                data.max_error_rate_increase,
                data.max_p95_ms,
                data.max_p95_ratio,
                data.guardrail_min_obs,
                data.breach_limit,
                data.breach_mode,
            ),
        )
        return created(ExperimentCreated, row, f"/v1/shadow/experiments/{row['experiment_id']}")

    @get("/experiments", summary="List experiments (keyset pagination)")
    async def list_experiments(self, db: DB, cursor: Cursor = None, limit: ClampedLimit = 100) -> ExperimentPage:
        rows = await db.all("SELECT * FROM shadow.list_experiments(%s::bigint, %s::int)", (cursor, limit))
        items = [ExperimentSummary(**r) for r in rows]
        return ExperimentPage(items=items, next_cursor=next_cursor(items, limit, "experiment_id"))

    @get(
        "/experiments/{experiment_id:int}",
        summary="Status: posteriors, P(win), expected loss, intervals, decision, canary step, guardrails",
    )
    async def get_experiment(self, experiment_id: PathId, db: DB) -> ExperimentStatus:
        return ExperimentStatus.from_row(
            await db.one("SELECT * FROM shadow.get_experiment(%s::bigint)", (experiment_id,))
        )

    @get("/experiments/{experiment_id:int}/events", summary="Deployment audit trail, oldest first")
    async def list_events(
        self, experiment_id: PathId, db: DB, cursor: Cursor = None, limit: ClampedLimit = 100
    ) -> EventPage:
        rows = await db.all(
            "SELECT * FROM shadow.list_events(%s::bigint, %s::bigint, %s::int)", (experiment_id, cursor, limit)
        )
        items = [Event(**r) for r in rows]
        return EventPage(items=items, next_cursor=next_cursor(items, limit, "event_id"))

    @post(
        "/experiments/{experiment_id:int}/observations",
        summary="Record a batch of observations (all or nothing)",
        status_code=201,
        response_headers=REPLAY,
    )
    async def record_observations(
        self, experiment_id: PathId, data: ObservationBatchIn, db: DB, idempotency_key: IdempotencyKey = None
    ) -> Response[ObservationsRecorded]:
        row = await db.one(
            "SELECT * FROM shadow.record_observations(%s::bigint, %s::jsonb, %s)",
            (experiment_id, msgspec.json.encode(data.observations).decode(), idempotency_key),
        )
        return created(ObservationsRecorded, row)

    @get("/experiments/{experiment_id:int}/assignments/{unit_id:str}", summary="The arm a unit is assigned to")
    async def assign(self, experiment_id: PathId, unit_id: Text200Path, db: DB) -> Assignment:
        row = await db.one("SELECT * FROM shadow.assign(%s::bigint, %s)", (experiment_id, unit_id))
        return Assignment(experiment_id=experiment_id, unit_id=unit_id, **row)

    @get(
        "/experiments/{experiment_id:int}/posterior.svg",
        summary="Both posterior densities with 95% intervals",
        media_type="image/svg+xml",
    )
    async def posterior_svg(self, experiment_id: PathId, db: DB) -> Response[str]:
        row = await db.one("SELECT shadow.posterior_svg(%s::bigint) AS svg", (experiment_id,))
        return Response(row["svg"], media_type="image/svg+xml", headers={"Cache-Control": "no-cache"})

    async def _act(self, fn: str, experiment_id: PathId, data: ActionIn, db, key: str | None) -> Response[Action]:
        row = await db.one(
            f"SELECT * FROM shadow.{fn}(%s::bigint, %s, %s, %s)", (experiment_id, data.actor, data.reason, key)
        )
        return created(Action, row)

    @post(
        "/experiments/{experiment_id:int}/pause",
        summary="Pause the canary (guardrails still protect)",
        status_code=201,
        response_headers=REPLAY,
    )
    async def pause(
        self, experiment_id: PathId, data: ActionIn, db: DB, idempotency_key: IdempotencyKey = None
    ) -> Response[Action]:
        return await self._act("pause", experiment_id, data, db, idempotency_key)

    @post(
        "/experiments/{experiment_id:int}/resume",
        summary="Resume a paused canary",
        status_code=201,
        response_headers=REPLAY,
    )
    async def resume(
        self, experiment_id: PathId, data: ActionIn, db: DB, idempotency_key: IdempotencyKey = None
    ) -> Response[Action]:
        return await self._act("resume", experiment_id, data, db, idempotency_key)

    @post(
        "/experiments/{experiment_id:int}/promote",
        summary="Promote the challenger (weight 100)",
        status_code=201,
        response_headers=REPLAY,
    )
    async def promote(
        self, experiment_id: PathId, data: ActionIn, db: DB, idempotency_key: IdempotencyKey = None
    ) -> Response[Action]:
        return await self._act("promote", experiment_id, data, db, idempotency_key)

    @post(
        "/experiments/{experiment_id:int}/rollback",
        summary="Roll the challenger back (weight 0)",
        status_code=201,
        response_headers=REPLAY,
    )
    async def rollback(
        self, experiment_id: PathId, data: ActionIn, db: DB, idempotency_key: IdempotencyKey = None
    ) -> Response[Action]:
        return await self._act("rollback", experiment_id, data, db, idempotency_key)


ROUTES = [ShadowController]
