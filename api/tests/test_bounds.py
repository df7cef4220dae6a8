"""The bounds the OpenAPI document states are SQL's (api/shieldx/models/bounds.py).

SQL is the rule; the document only states it. Each case reads one bound from
the served document, then calls the SQL function with the value at the bound
and with the value just beyond it: beyond, SQL refuses with the named error;
at the bound, SQL does not refuse for that reason (another one, say
insufficient funds, is fine). A bound changed on one side only fails here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from shieldx.app import create_app
from shieldx.config import Settings

PATHS = "paths"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    # The served document (/docs/openapi.json) as the app builds it; building opens no connection.
    app = create_app(Settings(database_url="postgresql://nobody@127.0.0.1:1/none"))
    return app.openapi_schema.to_schema()


def prop(model: str, field: str) -> Callable[[dict], dict]:
    return lambda d: d["components"]["schemas"][model]["properties"][field]


def param(path: str, method: str, name: str) -> Callable[[dict], dict]:
    def get(d: dict) -> dict:
        return next(p for p in d[PATHS][path][method]["parameters"] if p["name"] == name)["schema"]

    return get


def item(model: str, field: str) -> Callable[[dict], dict]:
    return lambda d: d["components"]["schemas"][model]["properties"][field]["items"]


TEN = "acme"
LEG = {"tenant_id": TEN, "account_id": 1, "amount": -1}
OBS = {"arm": "champion", "success": True, "latency_ms": 1}
BATCH_ITEM = {"op": "consume", "account_id": 1, "amount": 1, "idempotency_key": "b"}


EXPERIMENT = """
SELECT shadow.create_rule('r', 'rule'),
       shadow.add_rule_version('r', '{}', 'v1'), shadow.add_rule_version('r', '{}', 'v2'),
       shadow.create_experiment(p_name => 'e', p_rule_id => 'r', p_champion_version => 1, p_challenger_version => 2,
                                p_idem_key => 'e', p_actor => 'tests')
"""


def text(n: int) -> str:
    return "x" * n


# (schema of the bound, keyword, SQL call taking the value, the refusal's SQLSTATE)
CASES: list[tuple[str, Callable[[dict], dict], str, str, Callable[[Any], tuple], str]] = [
    (
        "amount",
        prop("AmountIn", "amount"),
        "maximum",
        "SELECT credits.consume(%s, 1, %s, 'k')",
        lambda v: (TEN, v),
        "SX003",
    ),
    (
        "amount",
        prop("AmountIn", "amount"),
        "minimum",
        "SELECT credits.grant_credits(%s, 1, %s, 'k')",
        lambda v: (TEN, v),
        "SX003",
    ),
    (
        "hold amount",
        prop("ReserveIn", "amount"),
        "maximum",
        "SELECT credits.reserve(%s, 1, %s, 'k')",
        lambda v: (TEN, v),
        "SX003",
    ),
    (
        "capture",
        prop("CommitHoldIn", "amount"),
        "minimum",
        "SELECT credits.commit_hold(%s, 1, %s)",
        lambda v: (TEN, v),
        "SX003",
    ),
    (
        "transfer",
        prop("TransferIn", "amount"),
        "maximum",
        "SELECT credits.transfer(%s, 1, 2, %s, 'k')",
        lambda v: (TEN, v),
        "SX003",
    ),
    (
        "reason",
        prop("AmountIn", "reason"),
        "maxLength",
        "SELECT credits.consume(%s, 1, 1, 'k', %s)",
        lambda v: (TEN, v),
        "SX007",
    ),
    (
        "ttl",
        prop("ReserveIn", "ttl_seconds"),
        "maximum",
        "SELECT credits.reserve(%s, 1, 1, 'k', make_interval(secs => %s))",
        lambda v: (TEN, v),
        "SX106",
    ),
    (
        "ttl",
        prop("ReserveIn", "ttl_seconds"),
        "minimum",
        "SELECT credits.reserve(%s, 1, 1, 'k', make_interval(secs => %s))",
        lambda v: (TEN, v),
        "SX106",
    ),
    (
        "key",
        param("/v1/tenants/{tenant_id}/accounts/{account_id}/consume", "post", "Idempotency-Key"),
        "maxLength",
        "SELECT credits.consume(%s, 1, 1, %s)",
        lambda v: (TEN, v),
        "SX006",
    ),
    (
        "key",
        param("/v1/tenants/{tenant_id}/accounts/{account_id}/consume", "post", "Idempotency-Key"),
        "minLength",
        "SELECT credits.consume(%s, 1, 1, %s)",
        lambda v: (TEN, v),
        "SX006",
    ),
    (
        "account key",
        param("/v1/tenants/{tenant_id}/accounts", "post", "Idempotency-Key"),
        "maxLength",
        "SELECT credits.create_account(%s, 'n', %s)",
        lambda v: (TEN, v),
        "SX006",
    ),
    (
        "erasure key",
        param("/v1/privacy/subjects/{subject_id}/erasure", "post", "Idempotency-Key"),
        "maxLength",
        "SELECT privacy.erase_subject('s', %s)",
        lambda v: (v,),
        "SX006",
    ),
    (
        "shadow key",
        param("/v1/shadow/experiments/{experiment_id}/pause", "post", "Idempotency-Key"),
        "maxLength",
        "SELECT shadow.pause(1, 'a', 'r', %s)",
        lambda v: (v,),
        "SX006",
    ),
    (
        "tenant name",
        prop("TenantIn", "name"),
        "maxLength",
        "SELECT credits.create_tenant('t2', %s)",
        lambda v: (v,),
        "SX007",
    ),
    (
        "tenant name",
        prop("TenantIn", "name"),
        "minLength",
        "SELECT credits.create_tenant('t2', %s)",
        lambda v: (v,),
        "SX007",
    ),
    (
        "tenant id",
        param("/v1/tenants/{tenant_id}", "put", "tenant_id"),
        "pattern",
        "SELECT credits.create_tenant(%s, 'n')",
        lambda v: (v,),
        "SX007",
    ),
    (
        "account name",
        prop("AccountIn", "name"),
        "maxLength",
        "SELECT credits.create_account(%s, %s, 'k2')",
        lambda v: (TEN, v),
        "SX007",
    ),
    (
        "account status",
        prop("AccountStatusIn", "status"),
        "enum",
        "SELECT credits.set_account_status(%s, 1, %s)",
        lambda v: (TEN, v),
        "SX007",
    ),
    (
        "limit",
        param("/v1/tenants/{tenant_id}/accounts", "get", "limit"),
        "maximum",
        "SELECT * FROM credits.list_accounts(%s, NULL, %s)",
        lambda v: (TEN, v),
        "SX007",
    ),
    (
        "limit",
        param("/v1/tenants/{tenant_id}/accounts", "get", "limit"),
        "minimum",
        "SELECT * FROM credits.list_accounts(%s, NULL, %s)",
        lambda v: (TEN, v),
        "SX007",
    ),
    (
        "entries limit",
        param("/v1/tenants/{tenant_id}/accounts/{account_id}/entries", "get", "limit"),
        "maximum",
        "SELECT * FROM credits.list_entries(%s, 1, NULL, %s)",
        lambda v: (TEN, v),
        "SX007",
    ),
    (
        "keys limit",
        param("/v1/tenants/{tenant_id}/keys", "get", "limit"),
        "maximum",
        "SELECT * FROM auth.list_keys(%s, NULL, %s)",
        lambda v: (TEN, v),
        "SX007",
    ),
    (
        "hold status",
        param("/v1/tenants/{tenant_id}/accounts/{account_id}/holds", "get", "status"),
        "enum",
        "SELECT * FROM credits.list_holds(%s, 1, %s)",
        lambda v: (TEN, v),
        "SX007",
    ),
    (
        "account id",
        param("/v1/tenants/{tenant_id}/accounts/{account_id}", "get", "account_id"),
        "maximum",
        "SELECT credits.get_account(%s, %s::numeric::bigint)",
        lambda v: (TEN, str(v)),
        "22003",
    ),
    (
        "xid",
        prop("DistBeginIn", "xid"),
        "maxLength",
        "SELECT credits.dist_begin(%s, %s::jsonb)",
        lambda v: (v, json.dumps([LEG])),
        "SX007",
    ),
    (
        "legs",
        prop("DistBeginIn", "legs"),
        "maxItems",
        "SELECT credits.dist_begin('x', %s::jsonb)",
        lambda v: (json.dumps(v),),
        "SX112",
    ),
    (
        "legs",
        prop("DistBeginIn", "legs"),
        "minItems",
        "SELECT credits.dist_begin('x', %s::jsonb)",
        lambda v: (json.dumps(v),),
        "SX112",
    ),
    (
        "leg amount",
        prop("Leg", "amount"),
        "maximum",
        "SELECT credits.dist_begin('x', %s::jsonb)",
        lambda v: (json.dumps([{**LEG, "amount": v}]),),
        "SX112",
    ),
    (
        "leg amount",
        prop("Leg", "amount"),
        "minimum",
        "SELECT credits.dist_begin('x', %s::jsonb)",
        lambda v: (json.dumps([{**LEG, "amount": v}]),),
        "SX112",
    ),
    (
        "timeout",
        prop("DistBeginIn", "timeout_seconds"),
        "maximum",
        "SELECT credits.dist_begin('x', %s::jsonb, make_interval(secs => %s))",
        lambda v: (json.dumps([LEG]), v),
        "SX106",
    ),
    (
        "decision",
        prop("DistDecideIn", "decision"),
        "enum",
        "SELECT credits.dist_decide('x', %s)",
        lambda v: (v,),
        "SX007",
    ),
    (
        "batch",
        prop("BatchIn", "items"),
        "maxItems",
        "SELECT * FROM credits.apply_batch(%s, %s::jsonb)",
        lambda v: (TEN, json.dumps(v)),
        "SX120",
    ),
    (
        "batch",
        prop("BatchIn", "items"),
        "minItems",
        "SELECT * FROM credits.apply_batch(%s, %s::jsonb)",
        lambda v: (TEN, json.dumps(v)),
        "SX120",
    ),
    (
        "key name",
        prop("KeyIn", "name"),
        "maxLength",
        "SELECT auth.create_key(%s, %s, '{consumer}', 'k')",
        lambda v: (TEN, v),
        "SX007",
    ),
    (
        "key roles",
        prop("KeyIn", "roles"),
        "minItems",
        "SELECT auth.create_key(%s, 'n', %s::text[], 'k')",
        lambda v: (TEN, v),
        "SX305",
    ),
    (
        "key role",
        item("KeyIn", "roles"),
        "enum",
        "SELECT auth.create_key(%s, 'n', ARRAY[%s], 'k')",
        lambda v: (TEN, v),
        "SX305",
    ),
    (
        "rate",
        prop("KeyIn", "rate_per_s"),
        "maximum",
        "SELECT auth.create_key(%s, 'n', '{consumer}', 'k', %s)",
        lambda v: (TEN, v),
        "SX306",
    ),
    (
        "rate",
        prop("KeyIn", "rate_per_s"),
        "exclusiveMinimum",
        "SELECT auth.create_key(%s, 'n', '{consumer}', 'k', %s)",
        lambda v: (TEN, v),
        "SX306",
    ),
    (
        "burst",
        prop("KeyIn", "burst"),
        "maximum",
        "SELECT auth.create_key(%s, 'n', '{consumer}', 'k', 1, %s)",
        lambda v: (TEN, v),
        "SX306",
    ),
    (
        "burst",
        prop("KeyIn", "burst"),
        "minimum",
        "SELECT auth.create_key(%s, 'n', '{consumer}', 'k', 1, %s)",
        lambda v: (TEN, v),
        "SX306",
    ),
    (
        "grace",
        prop("RotateKeyIn", "grace_s"),
        "maximum",
        "SELECT auth.rotate_key(%s, '000000000000', 'k', %s)",
        lambda v: (TEN, v),
        "SX007",
    ),
    (
        "grace",
        prop("RotateKeyIn", "grace_s"),
        "minimum",
        "SELECT auth.rotate_key(%s, '000000000000', 'k', %s)",
        lambda v: (TEN, v),
        "SX007",
    ),
    (
        "subject",
        param("/v1/privacy/subjects/{subject_id}/erasure", "post", "subject_id"),
        "maxLength",
        "SELECT privacy.erase_subject(%s, 'k')",
        lambda v: (v,),
        "SX007",
    ),
    (
        "rule id",
        param("/v1/shadow/rules/{rule_id}", "put", "rule_id"),
        "pattern",
        "SELECT shadow.create_rule(%s, 'n')",
        lambda v: (v,),
        "SX007",
    ),
    ("rule name", prop("RuleIn", "name"), "maxLength", "SELECT shadow.create_rule('r', %s)", lambda v: (v,), "SX007"),
    ("actor", prop("ActionIn", "actor"), "maxLength", "SELECT shadow.pause(1, %s, 'r', 'k')", lambda v: (v,), "SX007"),
    (
        "action reason",
        prop("ActionIn", "reason"),
        "maxLength",
        "SELECT shadow.pause(1, 'a', %s, 'k')",
        lambda v: (v,),
        "SX007",
    ),
    (
        "action reason",
        prop("ActionIn", "reason"),
        "minLength",
        "SELECT shadow.pause(1, 'a', %s, 'k')",
        lambda v: (v,),
        "SX007",
    ),
    (
        "observations",
        prop("ObservationBatchIn", "observations"),
        "maxItems",
        "SELECT shadow.record_observations((SELECT max(experiment_id) FROM shadow.experiments), %s::jsonb, 'k')",
        lambda v: (json.dumps(v),),
        "SX404",
    ),
    (
        "latency",
        prop("ObservationIn", "latency_ms"),
        "maximum",
        "SELECT shadow.record_observations((SELECT max(experiment_id) FROM shadow.experiments), %s::jsonb, 'k')",
        lambda v: (json.dumps([{**OBS, "latency_ms": v}]),),
        "SX403",
    ),
    (
        "latency",
        prop("ObservationIn", "latency_ms"),
        "minimum",
        "SELECT shadow.record_observations((SELECT max(experiment_id) FROM shadow.experiments), %s::jsonb, 'k')",
        lambda v: (json.dumps([{**OBS, "latency_ms": v}]),),
        "SX403",
    ),
    (
        "unit",
        prop("ObservationIn", "unit_id"),
        "maxLength",
        "SELECT shadow.record_observations((SELECT max(experiment_id) FROM shadow.experiments), %s::jsonb, 'k')",
        lambda v: (json.dumps([{**OBS, "unit_id": v}]),),
        "SX403",
    ),
    (
        "arm",
        prop("ObservationIn", "arm"),
        "enum",
        "SELECT shadow.record_observations((SELECT max(experiment_id) FROM shadow.experiments), %s::jsonb, 'k')",
        lambda v: (json.dumps([{**OBS, "arm": v}]),),
        "SX403",
    ),
]

# The arrays beyond and at a bound: what each item is.
ITEMS = {
    "legs": lambda i: {**LEG, "account_id": i + 1},
    "batch": lambda i: {**BATCH_ITEM, "idempotency_key": f"b{i}"},
    "observations": lambda i: OBS,
}


def edge(name: str, keyword: str, schema: dict) -> tuple[Any, Any]:
    """(the value at the bound, the value just beyond it) for one documented keyword."""
    bound = schema[keyword]
    if keyword == "maximum":
        step = 1 if isinstance(bound, int) else max(1e-6, abs(bound) * 1e-9)
        return bound, bound + step
    if keyword == "minimum":
        step = 1 if isinstance(bound, int) else bound  # the smallest float bound is one tick above 0
        return bound, bound - step
    if keyword == "exclusiveMinimum":
        return bound + 1e-9, bound
    if keyword in ("maxLength", "minLength"):
        return text(bound), text(bound + 1 if keyword == "maxLength" else bound - 1)
    if keyword in ("maxItems", "minItems"):
        n = bound + 1 if keyword == "maxItems" else bound - 1
        make = ITEMS.get(name, lambda i: "consumer")
        return [make(i) for i in range(bound)], [make(i) for i in range(n)]
    if keyword == "enum":
        return bound[0], "none-of-these"
    if keyword == "pattern":
        return "a", "-starts-with-a-dash"
    raise AssertionError(keyword)


@pytest.mark.parametrize(
    ("name", "where", "keyword", "sql", "args", "refusal"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES]
)
def test_documented_bound_is_sqls(doc, dsn, name, where, keyword, sql, args, refusal) -> None:
    schema = where(doc)
    assert keyword in schema, f"{name}: the document states no {keyword} ({schema})"
    at, beyond = edge(name, keyword, schema)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT credits.create_tenant('acme', 'Acme')")
        conn.execute("SELECT credits.create_account('acme', 'a', 'open-a')")
        if "shadow.experiments" in sql:
            conn.execute(EXPERIMENT)
        with pytest.raises(psycopg.Error) as refused:
            conn.execute(sql, args(beyond))
        assert refused.value.sqlstate == refusal, f"{name} {keyword}: {repr(beyond)[:80]} -> {refused.value}"
        try:
            conn.execute(sql, args(at))
        except psycopg.Error as exc:  # another reason is fine (funds, an unknown id), not this bound's
            assert exc.sqlstate != refusal, f"{name} {keyword}: {repr(at)[:80]}, at the bound, -> {exc}"
