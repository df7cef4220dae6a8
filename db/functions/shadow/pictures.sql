-- posterior.svg: both posterior densities with their 95% credible intervals.
-- Reads the status (folded counts, the job's stored intervals) and draws with
-- stats.render_svg, pure math: cheap on the API's request path (no scipy).
CREATE OR REPLACE FUNCTION shadow.posterior_svg(p_experiment bigint)
RETURNS text
LANGUAGE plpython3u STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $py$
plpy.execute("SELECT ops._py_load('shadow.stats')")
S = GD["shadow.stats"]
import json
plan = GD.get("shadow_svg_plan")
if plan is None:
    plan = plpy.prepare(
        "SELECT e.name, e.state, e.weight, e.champion_version, e.challenger_version, v.posterior::text AS posterior,"
        " to_char(v.computed_at, 'YYYY-MM-DD HH24:MI:SS') AS at, shadow._counts(e.experiment_id)::text AS counts"
        " FROM shadow._experiment($1) e LEFT JOIN shadow.evaluations v USING (experiment_id)", ["bigint"])
    GD["shadow_svg_plan"] = plan
r = plpy.execute(plan, [p_experiment])[0]
colors = {"champion": "#1f77b4", "challenger": "#d62728"}
arms = []
if r["posterior"] is not None:
    # The job's latest evaluation: densities and intervals from the same counts.
    post = json.loads(r["posterior"])
    for arm in ("champion", "challenger"):
        p = post[arm]
        arms.append({"label": f"{arm} v{r[arm + '_version']}", "alpha": p["alpha"], "beta": p["beta"],
                     "ci_low": p["ci_low"], "ci_high": p["ci_high"], "color": colors[arm]})
    p_better, when = post["p_challenger_better"], f"evaluated {r['at']} UTC"
else:
    # Not evaluated yet: the posteriors of the folded counts, without intervals.
    c = json.loads(r["counts"])
    for arm in ("champion", "challenger"):
        n, s = c[arm + "_n"], c[arm + "_successes"]
        arms.append({"label": f"{arm} v{r[arm + '_version']}", "alpha": 1 + s, "beta": 1 + n - s,
                     "ci_low": None, "ci_high": None, "color": colors[arm]})
    p_better, when = None, "not evaluated yet"
title = f"{r['name']}: {r['state']}, challenger at {r['weight']}% ({when})"
return S.render_svg(title, arms, p_better)
$py$;
COMMENT ON FUNCTION shadow.posterior_svg(bigint) IS
  'An SVG picture of both arms'' posterior densities with their 95% credible intervals. SX401 unknown experiment.';
