"""Apply the changed db/functions files after migrations (yoyo post-apply hook), for `yoyo apply` run by hand.

`shieldx db migrate` does not run this hook: it applies the function files itself
(shieldx.schema.reload_functions), in their own transaction with a lock timeout
and retries, even when no migration is pending.
"""

from yoyo import step

from shieldx.schema import apply_functions

steps = [step(lambda conn: apply_functions(conn))]
