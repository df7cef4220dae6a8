"""Roles: the application may only execute public functions; nobody but the owner writes."""

from __future__ import annotations

import psycopg
import pytest

from helpers import call, raises, setup_accounts

WRITES = [
    "INSERT INTO credits.entries (account_id, tenant_id, seq, kind, amount, balance_after, idem_key) "
    "VALUES (1, 'acme', 99, 'grant', 1, 1, 'forged')",
    "UPDATE credits.accounts SET balance = balance + 1000",
    "DELETE FROM credits.entries",
    "INSERT INTO credits.tenants (tenant_id, name) VALUES ('evil', 'Evil')",
    "UPDATE ops.error_catalog SET http_status = 200",
    "TRUNCATE credits.entries",
]


@pytest.mark.parametrize("statement", WRITES)
def test_app_role_cannot_write_any_table(db, connect, statement):
    setup_accounts(db)
    app = connect("shieldx_app")
    with raises("42501"):
        app.execute(statement)


def test_app_role_cannot_read_tables_or_call_private_functions(db, connect):
    setup_accounts(db)
    app = connect("shieldx_app")
    with raises("42501"):
        app.execute("SELECT * FROM credits.accounts")
    with raises("42501"):
        app.execute("SELECT ops._fail('SX001', 'x')")
    with raises("42501"):
        app.execute("SELECT credits._debit_refused('acme', 1, 1)")


def test_app_role_uses_the_sql_api_with_full_checks(db, connect):
    a, b = setup_accounts(db)
    app = connect("shieldx_app")
    assert call(app, "credits.consume", "acme", a, 10, "app-1")["balance_after"] == 90
    assert call(app, "credits.transfer", "acme", a, b, 10, "app-2")["to_balance_after"] == 110
    with raises("SX004"):
        call(app, "credits.consume", "acme", a, 1000, "app-3")


def test_app_role_cannot_disable_triggers_or_change_its_rights(connect):
    app = connect("shieldx_app")
    with raises("42501"):
        app.execute("ALTER TABLE credits.entries DISABLE TRIGGER entries_append_only")
    with raises("42501"):
        app.execute("SET session_replication_role = replica")
    with pytest.raises(psycopg.Error):
        app.execute("GRANT INSERT ON credits.entries TO shieldx_app")


def test_readonly_role_reads_but_cannot_mutate(db, connect):
    a, _ = setup_accounts(db)
    db.execute("DROP ROLE IF EXISTS dba_reader")
    db.execute("CREATE ROLE dba_reader LOGIN IN ROLE shieldx_readonly")
    try:
        ro = connect("dba_reader")
        assert ro.execute("SELECT count(*) AS n FROM credits.entries").fetchone()["n"] == 2
        assert call(ro, "credits.get_account", "acme", a)["balance"] == 100
        assert ro.execute("SELECT count(*) AS n FROM credits.reconcile()").fetchone()["n"] == 0
        with raises("42501"):
            call(ro, "credits.consume", "acme", a, 1, "ro")
        with raises("42501"):
            ro.execute("UPDATE credits.accounts SET balance = 0")
        ro.close()
    finally:
        db.execute("DROP OWNED BY dba_reader")
        db.execute("DROP ROLE dba_reader")


def test_public_functions_are_security_definer_with_fixed_search_path(db):
    bad = db.execute("""
        SELECT p.oid::regprocedure::text AS fn, p.prosecdef, p.proconfig, pg_get_userbyid(p.proowner) AS owner
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname IN ('credits', 'ops') AND p.proname NOT LIKE '\\_%'
           AND (NOT p.prosecdef OR NOT ('search_path=pg_catalog, pg_temp' = ANY (p.proconfig))
                OR pg_get_userbyid(p.proowner) <> 'shieldx_owner')
    """).fetchall()
    assert bad == []
    public = db.execute("""
        SELECT count(*) AS n FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'credits' AND p.proname NOT LIKE '\\_%'""").fetchone()["n"]
    assert public >= 10


def test_every_object_is_owned_by_the_owner_role(db):
    stray = db.execute("""
        SELECT c.oid::regclass::text AS rel FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('credits', 'ops') AND c.relkind IN ('r', 'v', 'm', 'p')
           AND pg_get_userbyid(c.relowner) <> 'shieldx_owner'""").fetchall()
    assert stray == []
