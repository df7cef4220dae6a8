"""The DDL watch: switching an audit or append-only guard off and on again is
itself written to the audit log (a chain 'ddl/<object>' per object), with the
session user and the command; a migrate that changes nothing logs nothing."""

from __future__ import annotations

import json

import psycopg
import pytest

from helpers import call, raises
from shieldx import schema
from test_audit_tamper import history, verify

DDL = "SELECT stream, seq, source, op, actor, payload FROM audit.log WHERE stream LIKE 'ddl/%%' "


def ddl(db, after=0):
    """The 'ddl/...' chains' entries, in transaction order, after transaction `after`; payloads decoded."""
    found = db.execute(DDL + "AND txid > %s ORDER BY txid, stream, seq", (after,)).fetchall()
    return [dict(r, payload=json.loads(r["payload"])) for r in found]


def last_txid(db):
    return db.execute("SELECT coalesce(max(txid), 0) AS m FROM audit.log WHERE stream LIKE 'ddl/%'").fetchone()["m"]


def test_disable_write_enable_is_logged_and_verify_still_finds_the_gap(db):
    a, _ = history(db)
    assert ddl(db) == [], "installing the schema is not logged"
    db.execute("ALTER TABLE credits.entries DISABLE TRIGGER audit_log")
    hidden = call(db, "credits.consume", "acme", a, 1, "unaudited")
    db.execute("ALTER TABLE credits.entries ENABLE ALWAYS TRIGGER audit_log")
    off, on = ddl(db)
    for e in (off, on):
        assert (e["source"], e["op"], e["actor"]) == ("credits.entries", "ALTER TABLE", "postgres")
        assert e["payload"]["object"] == "credits.entries" and e["payload"]["kind"] == "table"
    assert (off["payload"]["removed"], off["payload"]["added"]) == (
        ["trigger audit_log: ENABLE ALWAYS"],
        ["trigger audit_log: DISABLE"],
    )
    assert (on["payload"]["removed"], on["payload"]["added"]) == (
        ["trigger audit_log: DISABLE"],
        ["trigger audit_log: ENABLE ALWAYS"],
    )
    assert off["payload"]["query"] == "ALTER TABLE credits.entries DISABLE TRIGGER audit_log"
    # verify() reports the journal row written meanwhile, exactly as without the watch ...
    r = verify(db)
    assert (r["ok"], r["stream"], r["seq"]) == (False, f"ledger/{a}", hidden["seq"])
    assert "no audit entry" in r["problem"]
    # ... and the 'ddl/...' chains themselves are sound.
    assert off["stream"] == "ddl/credits.entries" and (off["seq"], on["seq"]) == (1, 2)
    assert db.execute("SELECT * FROM audit.verify_streams() WHERE stream LIKE 'ddl%'").fetchall() == []


def test_one_transaction_under_replica_role_is_logged_too(db, dsn):
    history(db)
    with psycopg.connect(dsn) as conn:  # one transaction
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("SET LOCAL ROLE shieldx_owner")
        conn.execute("ALTER TABLE audit.log DISABLE TRIGGER append_only")
        conn.execute("ALTER TABLE audit.log ENABLE ALWAYS TRIGGER append_only")
    entries = ddl(db)
    assert [(e["source"], e["payload"]["added"]) for e in entries] == [
        ("audit.log", ["trigger append_only: DISABLE"]),
        ("audit.log", ["trigger append_only: ENABLE ALWAYS"]),
    ]
    assert {e["payload"]["role"] for e in entries} == {"shieldx_owner"}  # SET ROLE is named; actor stays the login
    assert {e["actor"] for e in entries} == {"postgres"}


def test_a_migrate_that_changes_nothing_logs_nothing(db, dsn):
    history(db)
    # Every function file applied again (unchanged files are skipped otherwise):
    # re-creates every trigger and function, re-runs ENABLE ALWAYS.
    schema.migrate(dsn, force_functions=True)
    assert ddl(db) == []
    # An identical CREATE OR REPLACE keeps the trigger ENABLE ALWAYS (PostgreSQL
    # alone would reset it to ENABLE, skipped under session_replication_role = replica).
    db.execute(
        "CREATE OR REPLACE TRIGGER audit_log AFTER INSERT ON credits.entries FOR EACH ROW"
        " EXECUTE FUNCTION audit._log_ledger_row()"
    )
    assert (
        db.execute(
            "SELECT tgenabled FROM pg_trigger WHERE tgname = 'audit_log' AND tgrelid = 'credits.entries'::regclass"
        ).fetchone()["tgenabled"]
        == "A"
    )
    assert ddl(db) == []


def test_dropping_a_guard_and_its_function_is_logged(db, dsn):
    history(db)
    db.execute("DROP TRIGGER audit_log ON credits.tenants")
    (dropped,) = ddl(db)
    assert (dropped["source"], dropped["op"]) == ("credits.tenants", "DROP TRIGGER")
    assert "trigger audit_log: ENABLE ALWAYS" in dropped["payload"]["removed"]
    assert dropped["payload"]["added"] == []
    # Put back the way a migrate does it: created (ENABLE), then ENABLE ALWAYS.
    txid = last_txid(db)
    db.execute("SELECT audit._attach('credits.tenants')")
    assert [e["op"] for e in ddl(db, txid) if e["source"] == "credits.tenants"] == ["CREATE TRIGGER", "ALTER TABLE"]
    # DROP FUNCTION ... CASCADE takes every append-only trigger with it: each
    # table and the function get an entry (then everything is rolled back).
    txid = last_txid(db)
    with psycopg.connect(dsn) as conn:
        conn.execute("DROP FUNCTION ops._refuse_change() CASCADE")
        found = conn.execute(
            "SELECT source, payload FROM audit.log WHERE stream LIKE 'ddl/%%' AND txid > %s", (txid,)
        ).fetchall()
        conn.rollback()
    sources = {s for s, _ in found}
    assert {"ops._refuse_change()", "audit.log", "credits.entries", "credits.holds"} <= sources
    fn = next(json.loads(p) for s, p in found if s == "ops._refuse_change()")
    assert fn["dropped"] and fn["command"] == "DROP FUNCTION"


def test_a_guard_function_rewritten_in_place_is_logged(db, dsn):
    history(db)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION ops._refuse_change() RETURNS trigger LANGUAGE plpgsql "
            "SET search_path = pg_catalog, pg_temp AS $$ BEGIN RETURN NULL; END $$"
        )
        ((source, op, payload),) = conn.execute(
            "SELECT source, op, payload::jsonb FROM audit.log WHERE stream LIKE 'ddl/%'"
        ).fetchall()
        conn.rollback()
    assert (source, op) == ("ops._refuse_change()", "CREATE FUNCTION")
    assert [f.split(" ")[:2] for f in payload["removed"]] == [["body", "md5"]]


def test_schema_changes_of_an_audited_table_are_logged(db):
    history(db)
    db.execute("ALTER TABLE credits.tenants ADD COLUMN note text /* card 4242 4242 4242 4242 */")
    db.execute("ALTER TABLE credits.tenants DROP COLUMN note")
    add, drop = ddl(db)
    assert add["payload"]["added"] == ["column note text"] and drop["payload"]["removed"] == ["column note text"]
    assert "4242 4242 4242 4242" not in add["payload"]["query"] and "[digits]" in add["payload"]["query"]
    # DDL on other tables is not watched.
    db.execute("CREATE TABLE public.scratch (a int)")
    db.execute("ALTER TABLE public.scratch ADD COLUMN b int")
    assert len(ddl(db)) == 2


APP_ATTEMPTS = [
    "ALTER TABLE credits.entries DISABLE TRIGGER audit_log",
    "DROP TRIGGER audit_log ON credits.entries",
    "ALTER EVENT TRIGGER audit_ddl_watch DISABLE",
    "DROP EVENT TRIGGER audit_ddl_watch",
    "SELECT audit._ddl_watch_start()",
    "SELECT * FROM audit.ddl_watched",
    "DELETE FROM audit.ddl_watched",
    "CREATE OR REPLACE FUNCTION ops._refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
]


@pytest.mark.parametrize("statement", APP_ATTEMPTS)
def test_the_application_role_can_do_none_of_it(db, connect, statement):
    history(db)
    app = connect("shieldx_app")
    with raises("42501"):
        app.execute(statement)
    assert ddl(db) == []


def test_application_ddl_on_its_own_temp_table_still_works(db, connect):
    app = connect("shieldx_app")
    app.execute("CREATE TEMP TABLE mine (a int)")
    app.execute("ALTER TABLE mine ADD COLUMN b int")
    assert ddl(db) == []


def test_a_watch_switched_off_is_reported_then_caught_up(db, dsn):
    _a, _ = history(db)
    assert verify(db)["ok"]
    db.execute("ALTER EVENT TRIGGER audit_ddl_watch DISABLE")  # not logged: event triggers skip event-trigger DDL
    db.execute("ALTER TABLE credits.tenants ADD COLUMN note text")
    assert ddl(db) == []
    problems = {
        r["problem"]
        for r in db.execute("SELECT problem FROM audit.verify_streams() WHERE stream LIKE 'ddl%'").fetchall()
    }
    assert problems == {
        "the DDL watch is off: event trigger audit_ddl_watch is not ENABLE ALWAYS but DISABLE",
        "table credits.tenants differs from its last logged state (changed while the DDL watch was off?)",
    }
    r = verify(db)
    assert (r["ok"], r["stream"], r["seq"]) == (False, "ddl", 0)
    # The next migrate switches it on again and logs what it finds changed.
    schema.migrate(dsn)
    (found,) = ddl(db)
    assert (found["source"], found["op"], found["payload"]["added"]) == (
        "credits.tenants",
        "UNLOGGED DDL",
        ["column note text"],
    )
    assert verify(db)["ok"]
    # Dropped altogether: reported, and the migrate re-creates it.
    db.execute("DROP EVENT TRIGGER audit_ddl_watch_drop")
    assert "audit_ddl_watch_drop is missing" in verify(db)["problem"]
    schema.migrate(dsn)
    assert verify(db)["ok"]
    db.execute("ALTER TABLE credits.entries DISABLE TRIGGER audit_log")
    assert ddl(db)[-1]["payload"]["added"] == ["trigger audit_log: DISABLE"]
