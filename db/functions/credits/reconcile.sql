-- Proof that the balances are the journal: for every account, balance equals
-- the sum of its entries, the last entry's balance_after equals the balance,
-- and seq runs 1..entry_seq without gaps. Returns only the accounts that fail,
-- so an empty result is the proof. O(entries); run it from psql or a job.
CREATE OR REPLACE FUNCTION credits.reconcile()
RETURNS TABLE (account_id bigint, tenant_id text, balance bigint, ledger_sum numeric,
               last_balance_after bigint, entry_seq bigint, entry_count bigint, problem text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  WITH sums AS (
    SELECT e.account_id, sum(e.amount) AS total, count(*) AS n, max(e.seq) AS max_seq,
           (array_agg(e.balance_after ORDER BY e.seq DESC))[1] AS last_after
      FROM (SELECT account_id, amount, seq, balance_after FROM credits.entries
            UNION ALL  -- entries moved by retention (audit.cleanup_old_transactions)
            SELECT account_id, amount, seq, balance_after FROM credits.entries_archive) e GROUP BY e.account_id)
  SELECT a.account_id, a.tenant_id, a.balance, coalesce(s.total, 0), s.last_after, a.entry_seq,
         coalesce(s.n, 0),
         concat_ws('; ',
           CASE WHEN a.balance <> coalesce(s.total, 0) THEN 'balance differs from sum of entries' END,
           CASE WHEN s.last_after IS DISTINCT FROM (CASE WHEN s.n IS NULL THEN NULL ELSE a.balance END)
                THEN 'last entry balance_after differs from balance' END,
           CASE WHEN coalesce(s.n, 0) <> a.entry_seq OR coalesce(s.max_seq, 0) <> a.entry_seq
                THEN 'entry sequence has gaps or does not match entry_seq' END)
    FROM credits.accounts a LEFT JOIN sums s USING (account_id)
   WHERE a.balance <> coalesce(s.total, 0)
      OR s.last_after IS DISTINCT FROM (CASE WHEN s.n IS NULL THEN NULL ELSE a.balance END)
      OR coalesce(s.n, 0) <> a.entry_seq OR coalesce(s.max_seq, 0) <> a.entry_seq;
$$;
COMMENT ON FUNCTION credits.reconcile() IS
  'Accounts whose balance is not their journal (sum of entries, last balance_after, seq without gaps, archive '
  'included); no rows is the proof. O(entries).';
