"""Re-apply every db/functions file after migrations (yoyo post-apply hook).

`shieldx db migrate` calls the same loader even when no migration is pending,
so an edited function file reaches the database on every migrate.
"""

from yoyo import step

from shieldx.schema import apply_functions

steps = [step(lambda conn: apply_functions(conn))]
