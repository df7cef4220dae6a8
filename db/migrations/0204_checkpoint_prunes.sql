-- depends: 0203_ddl_watch
-- Pruned checkpoint heads (audit.prune_checkpoint_heads): each run that
-- removed anything records that the heads of every checkpoint up to
-- through_checkpoint are gone (always older than the keep window, never the
-- last checkpoint's). The checkpoints themselves stay: their signatures
-- chain. Append-only (db/functions/audit/immutability.sql).
-- Released before migrations set lock and statement timeouts; kept as it ran.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
SET ROLE shieldx_owner;
CREATE TABLE audit.checkpoint_prunes (
  through_checkpoint bigint PRIMARY KEY REFERENCES audit.checkpoints,
  pruned_at          timestamptz NOT NULL DEFAULT now(),
  checkpoints        bigint NOT NULL,   -- checkpoints whose heads this run removed
  heads_removed      bigint NOT NULL
);
RESET ROLE;
