-- Load stats.py (embedded by stats.sql) into GD, the dictionary every PL/Python
-- function of this session shares: once per backend, again only when
-- _stats_version() changes. Each statistics function calls this first, then
-- reads GD["shadow_stats"], so the loading code lives in one place.
CREATE OR REPLACE FUNCTION shadow._stats_load()
RETURNS void
LANGUAGE plpython3u
AS $py$
ver = plpy.execute("SELECT shadow._stats_version() AS v")[0]["v"]
S = GD.get("shadow_stats")
if S is None or S.VERSION != ver:
    import types
    S = types.ModuleType("shadow_stats")
    exec(compile(plpy.execute("SELECT shadow._stats_source() AS s")[0]["s"], "shadow/stats.py", "exec"), S.__dict__)
    S.VERSION = ver
    GD["shadow_stats"] = S
$py$;
