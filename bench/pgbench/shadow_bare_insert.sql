\set arm random(0, 1)
INSERT INTO public.bench_obs (experiment_id, arm, success, error, latency_ms)
SELECT 1, CASE WHEN :arm::int = 0 THEN 'champion' ELSE 'challenger' END, random() < 0.1, false, 5 + 20 * random()
  FROM generate_series(1, :batch::int);
