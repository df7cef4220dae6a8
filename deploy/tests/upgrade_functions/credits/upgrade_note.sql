-- The rehearsal release's new version of credits.get_account: a changed
-- signature is a new function (here an overload with one more argument and
-- one more result column), so the running release's calls of
-- credits.get_account(text, bigint) are untouched. No DEFAULT on the new
-- argument: a call with two arguments would then be ambiguous.
CREATE OR REPLACE FUNCTION credits.get_account(
  p_tenant text, p_account bigint, p_with_note boolean,
  OUT account_id bigint, OUT balance bigint, OUT upgrade_note text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  SELECT a.account_id, a.balance, CASE WHEN p_with_note THEN a.upgrade_note END
    INTO account_id, balance, upgrade_note
    FROM credits.accounts a WHERE a.account_id = p_account AND a.tenant_id = p_tenant;
  IF NOT FOUND THEN
    PERFORM ops._fail('SX002', format('account %s not found', p_account), jsonb_build_object('account_id', p_account));
  END IF;
END
$$;
