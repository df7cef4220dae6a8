"""The SQL API documents itself: every public function (name not starting with
"_") of the product's schemas has a COMMENT, which `\\df+` shows, and every
named error a comment cites is in the error catalog."""

from __future__ import annotations

import re

SCHEMAS = ["credits", "audit", "vault", "privacy", "auth", "shadow", "ops"]

PUBLIC_FUNCTIONS = """
    SELECT p.oid::regprocedure::text AS function, obj_description(p.oid, 'pg_proc') AS comment
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = ANY(%s) AND p.proname !~ '^_'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
     ORDER BY 1"""


def test_every_public_function_has_a_comment(db):
    rows = db.execute(PUBLIC_FUNCTIONS, [SCHEMAS]).fetchall()
    assert len(rows) > 50, "the product's public functions should be found"
    missing = [r["function"] for r in rows if not (r["comment"] or "").strip()]
    assert missing == [], f"COMMENT ON FUNCTION missing for: {missing}"


def test_the_named_errors_a_comment_cites_exist(db):
    catalog = {r["sqlstate"] for r in db.execute("SELECT sqlstate FROM ops.error_catalog")}
    cited = {
        (r["function"], code)
        for r in db.execute(PUBLIC_FUNCTIONS, [SCHEMAS]).fetchall()
        for code in re.findall(r"\bSX\d{3}\b", r["comment"] or "")
    }
    assert cited, "comments should name the errors a function raises"
    assert sorted(c for c in cited if c[1] not in catalog) == []


def test_a_private_function_without_a_comment_is_not_reported(db):
    db.execute("CREATE FUNCTION credits._probe_uncommented() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    db.execute("CREATE FUNCTION credits.probe_uncommented() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    rows = db.execute(PUBLIC_FUNCTIONS, [SCHEMAS]).fetchall()
    names = {r["function"] for r in rows if not r["comment"]}
    assert names == {"credits.probe_uncommented()"}


def test_every_table_has_a_comment(db):
    rows = db.execute(
        """SELECT c.oid::regclass::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(%s)
              AND coalesce(obj_description(c.oid, 'pg_class'), '') = '' ORDER BY 1""",
        [SCHEMAS],
    ).fetchall()
    assert [r["name"] for r in rows] == []
