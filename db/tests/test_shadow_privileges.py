"""Shadow objects follow the conventions: owner owns all, public functions are
SECURITY DEFINER with a fixed search_path, the application writes only through them."""

from __future__ import annotations

from helpers import raises


def test_public_shadow_functions_are_security_definer_with_fixed_search_path(db):
    bad = db.execute("""
        SELECT p.oid::regprocedure::text AS fn FROM pg_proc p
         WHERE p.pronamespace = 'shadow'::regnamespace AND p.proname NOT LIKE '\\_%'
           AND (NOT p.prosecdef OR NOT ('search_path=pg_catalog, pg_temp' = ANY (p.proconfig))
                OR pg_get_userbyid(p.proowner) <> 'shieldx_owner')""").fetchall()
    assert bad == []
    public = db.execute("""SELECT count(*) AS n FROM pg_proc p WHERE p.pronamespace = 'shadow'::regnamespace
                            AND p.proname NOT LIKE '\\_%'""").fetchone()["n"]
    assert public >= 15


def test_every_shadow_table_is_owned_by_the_owner(db):
    stray = db.execute("""SELECT c.oid::regclass::text AS rel FROM pg_class c
                           WHERE c.relnamespace = 'shadow'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p')
                             AND pg_get_userbyid(c.relowner) <> 'shieldx_owner'""").fetchall()
    assert stray == []


def test_app_reads_through_functions_readonly_reads_tables(db, connect):
    app = connect("shieldx_app")
    with raises("42501"):
        app.execute("SELECT * FROM shadow.deployment_events")
    with raises("42501"):
        app.execute("SELECT shadow._fold()")
    assert app.execute("SELECT count(*) AS n FROM shadow.list_experiments()").fetchone()["n"] == 0
    db.execute("SET ROLE shieldx_readonly")
    try:
        assert db.execute("SELECT count(*) AS n FROM shadow.deployment_events").fetchone()["n"] == 0
        with raises("42501"):
            db.execute("INSERT INTO shadow.rules (rule_id, name) VALUES ('x', 'x')")
    finally:
        db.execute("RESET ROLE")


def test_request_paths_never_import_scipy(db, connect):
    from shadow_helpers import run_job, send, setup_experiment

    exp = setup_experiment(db)
    send(db, exp, "champion", 200, successes=20)
    send(db, exp, "challenger", 200, successes=25)
    run_job(db)  # the job's backend imports scipy; an API backend must not
    api = connect()
    api.execute("SELECT * FROM shadow.get_experiment(%s)", (exp,))
    api.execute("SELECT shadow.posterior_svg(%s)", (exp,))
    api.execute("SELECT * FROM shadow.assign(%s, 'u1')", (exp,))
    api.execute("SELECT shadow.decide(200, 20, 200, 25)")
    api.execute(
        'SELECT * FROM shadow.record_observations(%s, \'[{"arm": "champion", "success": true, '
        "\"latency_ms\": 1}]', 'k-api')",
        (exp,),
    )
    api.execute("""CREATE FUNCTION pg_temp.loaded() RETURNS text[] LANGUAGE plpython3u AS
                   $$ import sys; return sorted(m for m in ('scipy', 'numpy') if m in sys.modules) $$""")
    assert api.execute("SELECT pg_temp.loaded() AS m").fetchone()["m"] == []
    db.execute("""CREATE FUNCTION pg_temp.loaded() RETURNS text[] LANGUAGE plpython3u AS
                  $$ import sys; return sorted(m for m in ('scipy', 'numpy') if m in sys.modules) $$""")
    assert db.execute("SELECT pg_temp.loaded() AS m").fetchone()["m"] == ["numpy", "scipy"]  # the job's did
