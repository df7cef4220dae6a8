"""Embedded Python modules (db/embed_python.py): each generated .sql is current,
and ops._py_load runs exactly the module's text, reloading it when it changes."""

from __future__ import annotations

import importlib.util

from shieldx.paths import DB_DIR


def _embed():
    spec = importlib.util.spec_from_file_location("embed_python", DB_DIR / "embed_python.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


E = _embed()


def test_every_generated_file_is_current():
    assert E.modules(), "db/functions/<schema>/<name>.py modules expected"
    assert E.stale() == [], "run `python db/embed_python.py` after editing a module"


def test_each_module_is_embedded_verbatim_with_its_version(db):
    for py in E.modules():
        schema, name = py.parent.name, py.stem
        row = db.execute(f"SELECT {schema}._{name}_source() AS s, {schema}._{name}_version() AS v").fetchone()
        assert row["s"] == py.read_text()
        assert row["v"] == E.version(py.read_text())


def test_the_loader_reloads_a_module_when_its_version_changes(db):
    db.execute("SELECT ops._py_load('vault.keyring')")
    db.execute("""CREATE FUNCTION pg_temp.probe() RETURNS text LANGUAGE plpython3u AS $py$
return GD['vault.keyring'].VERSION + ' ' + str(hasattr(GD['vault.keyring'], 'PROBE'))
$py$""")
    first = db.execute("SELECT pg_temp.probe() AS p").fetchone()["p"]
    assert first == E.version((E.FUNCTIONS_DIR / "vault" / "keyring.py").read_text()) + " False"
    db.execute("""CREATE OR REPLACE FUNCTION vault._keyring_source() RETURNS text LANGUAGE sql IMMUTABLE
                  AS $fn$ SELECT 'PROBE = 1'::text $fn$""")
    db.execute("""CREATE OR REPLACE FUNCTION vault._keyring_version() RETURNS text LANGUAGE sql IMMUTABLE
                  AS $fn$ SELECT 'probe'::text $fn$""")
    db.execute("SELECT ops._py_load('vault.keyring')")
    assert db.execute("SELECT pg_temp.probe() AS p").fetchone()["p"] == "probe True"
