-- The sequential decision rule at one look (see stats.py and the README):
-- two one-sided SPRTs, 'challenger_better' at alpha 0.008, 'challenger_worse'
-- at 0.002, valid however often the job looks. Pure math: no scipy.
CREATE OR REPLACE FUNCTION shadow.decide(
  champion_n bigint, champion_successes bigint, challenger_n bigint, challenger_successes bigint)
RETURNS jsonb
LANGUAGE plpython3u IMMUTABLE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $py$
import json
plpy.execute("SELECT ops._py_load('shadow.stats')")
S = GD["shadow.stats"]
if not (0 <= champion_successes <= champion_n and 0 <= challenger_successes <= challenger_n):
    plpy.error("successes must be between 0 and n", sqlstate="SX007")
return json.dumps(S.sequential_decision(champion_n, champion_successes, challenger_n, challenger_successes))
$py$;
COMMENT ON FUNCTION shadow.decide(bigint, bigint, bigint, bigint) IS
  'The sequential decision rule at one look, from the counts of both arms: ''challenger_better'', '
  '''challenger_worse'' or ''continue'' with its log-likelihood ratios (two one-sided SPRTs, valid however often '
  'it looks). SX007 invalid counts.';
