-- PL/Python entry points to the statistics module (stats.py, embedded by
-- stats.sql). The module is loaded once per backend into GD and reloaded when
-- its version changes; it imports only `math` itself, and scipy only inside the
-- functions that need it (large-count P(B > A), credible intervals), which the
-- pg_cron job calls: the API's pooled backends never pay the import.

-- What the job stores per experiment: posteriors, P(challenger > champion),
-- expected losses, 95% credible intervals, lift and the sequential decision.
CREATE OR REPLACE FUNCTION shadow._posterior_summary(n_a bigint, s_a bigint, n_b bigint, s_b bigint)
RETURNS jsonb
LANGUAGE plpython3u
AS $py$
import json
plpy.execute("SELECT ops._py_load('shadow.stats')")
S = GD["shadow.stats"]
return json.dumps(S.summary(n_a, s_a, n_b, s_b))
$py$;

-- P(X_challenger > X_champion) for Beta posteriors: Evan Miller's exact sum when
-- the smallest parameter is <= 3000 (integers), Gauss-Legendre quadrature beyond.
CREATE OR REPLACE FUNCTION shadow.prob_challenger_better(
  champion_alpha double precision, champion_beta double precision,
  challenger_alpha double precision, challenger_beta double precision)
RETURNS double precision
LANGUAGE plpython3u IMMUTABLE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $py$
plpy.execute("SELECT ops._py_load('shadow.stats')")
S = GD["shadow.stats"]
if min(champion_alpha, champion_beta, challenger_alpha, challenger_beta) <= 0:
    plpy.error("Beta parameters must be positive", sqlstate="SX007")
return S.prob_greater(champion_alpha, champion_beta, challenger_alpha, challenger_beta)
$py$;
COMMENT ON FUNCTION shadow.prob_challenger_better(
  double precision, double precision, double precision, double precision) IS
  'P(challenger > champion) for two Beta posteriors (exact sum for moderate parameters, quadrature beyond). SX007 '
  'when a parameter is not positive.';

-- E[max(champion - challenger, 0)]: the expected loss of choosing the challenger.
CREATE OR REPLACE FUNCTION shadow.expected_loss_of_challenger(
  champion_alpha double precision, champion_beta double precision,
  challenger_alpha double precision, challenger_beta double precision)
RETURNS double precision
LANGUAGE plpython3u IMMUTABLE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $py$
plpy.execute("SELECT ops._py_load('shadow.stats')")
S = GD["shadow.stats"]
if min(champion_alpha, champion_beta, challenger_alpha, challenger_beta) <= 0:
    plpy.error("Beta parameters must be positive", sqlstate="SX007")
return S.expected_loss(champion_alpha, champion_beta, challenger_alpha, challenger_beta)
$py$;
COMMENT ON FUNCTION shadow.expected_loss_of_challenger(
  double precision, double precision, double precision, double precision) IS
  'E[max(champion - challenger, 0)] for two Beta posteriors: the expected loss of choosing the challenger. SX007 '
  'when a parameter is not positive.';
