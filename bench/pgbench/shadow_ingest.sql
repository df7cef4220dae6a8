\set arm random(0, 1)
SELECT accepted FROM shadow.record_observation_arrays(1,
  array_fill(CASE WHEN :arm::int = 0 THEN 'champion' ELSE 'challenger' END::text, ARRAY[:batch::int]),
  ARRAY(SELECT random() < 0.1 FROM generate_series(1, :batch::int)), array_fill(false, ARRAY[:batch::int]),
  ARRAY(SELECT 5 + 20 * random() FROM generate_series(1, :batch::int)), 'k' || nextval('public.bench_keys'));
