-- Load an embedded Python module (db/functions/<schema>/<name>.py, embedded
-- by the generated <name>.sql; see db/embed_python.py) into GD, the dictionary
-- every PL/Python function of this backend shares: once per backend, again
-- only when <schema>._<name>_version() changes. A PL/Python function calls
-- this first, then reads GD['<schema>.<name>'], so the loading code lives in
-- one place.
CREATE OR REPLACE FUNCTION ops._py_load(p_module text)
RETURNS void
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $py$
schema, _, name = p_module.partition(".")
fn = "%s.%%s()" % plpy.quote_ident(schema)
ver = plpy.execute("SELECT %s AS v" % (fn % plpy.quote_ident("_%s_version" % name)))[0]["v"]
M = GD.get(p_module)
if M is None or M.VERSION != ver:
    import types
    M = types.ModuleType(p_module)
    src = plpy.execute("SELECT %s AS s" % (fn % plpy.quote_ident("_%s_source" % name)))[0]["s"]
    exec(compile(src, "%s/%s.py" % (schema, name), "exec"), M.__dict__)
    M.VERSION = ver
    GD[p_module] = M
$py$;
