-- Distributed transactions: several legs, across accounts and tenants, that
-- commit all or none. The coordinator record (credits.dist_transactions) is
-- durable, so each step can be its own call and a crash between steps is
-- finished by recovery:
--   begin    record the transaction and its legs                 -> active
--   prepare  each leg votes: a debit is reserved as a hold (pinned to the
--            deadline), a credit is checked; all yes             -> prepared
--            any no: abort at once                               -> aborted
--   decide   log the decision: commit (only when prepared, before the
--            deadline; pins the holds so they cannot expire)     -> committing
--            or abort                                            -> aborting
--   complete apply the decision to every leg                     -> committed | aborted
-- commit / abort = decide + complete in one call. No decision by the deadline
-- means abort (presumed abort): recovery aborts it, and commit refuses it.
-- Every state change is appended to credits.dist_events.
-- Lock order: the transaction row, then every leg's account (in account_id
-- order, all of them before any write), then the holds and records. Audited
-- writes lock audit chain heads shared across accounts, so nothing may wait
-- for an account after writing one (see credits/holds.sql).

-- State machine on the table itself: allowed transitions only, decisions and
-- identity are immutable, final states are final.
CREATE OR REPLACE FUNCTION credits._dist_tx_transition_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'credits.dist_transactions rows are never deleted' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF (NEW.dist_tx_id, NEW.xid, NEW.coordinator, NEW.legs, NEW.deadline, NEW.created_at)
     IS DISTINCT FROM (OLD.dist_tx_id, OLD.xid, OLD.coordinator, OLD.legs, OLD.deadline, OLD.created_at)
     OR (OLD.decision IS NOT NULL AND NEW.decision IS DISTINCT FROM OLD.decision) THEN
    RAISE EXCEPTION 'distributed transaction %: identity and decision are immutable', OLD.xid
      USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.state <> OLD.state AND (OLD.state, NEW.state) NOT IN (
       ('active', 'prepared'), ('active', 'aborting'),
       ('prepared', 'committing'), ('prepared', 'aborting'),
       ('committing', 'committed'), ('aborting', 'aborted')) THEN
    RAISE EXCEPTION 'distributed transaction %: % -> % is not a legal transition', OLD.xid, OLD.state, NEW.state
      USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.state = OLD.state AND OLD.state IN ('committed', 'aborted') THEN
    RAISE EXCEPTION 'distributed transaction % is % and can change no more', OLD.xid, OLD.state
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER dist_transactions_transition_guard
  BEFORE UPDATE OR DELETE ON credits.dist_transactions
  FOR EACH ROW EXECUTE FUNCTION credits._dist_tx_transition_guard();
ALTER TABLE credits.dist_transactions ENABLE ALWAYS TRIGGER dist_transactions_transition_guard;

-- A leg votes once and has one outcome.
CREATE OR REPLACE FUNCTION credits._dist_participant_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'credits.dist_participants rows are never deleted' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF (NEW.dist_tx_id, NEW.leg_no, NEW.tenant_id, NEW.account_id, NEW.amount)
       IS DISTINCT FROM (OLD.dist_tx_id, OLD.leg_no, OLD.tenant_id, OLD.account_id, OLD.amount)
     OR (OLD.vote IS NOT NULL AND (NEW.vote, NEW.hold_id) IS DISTINCT FROM (OLD.vote, OLD.hold_id))
     OR (OLD.outcome IS NOT NULL AND (NEW.outcome, NEW.entry_id) IS DISTINCT FROM (OLD.outcome, OLD.entry_id)) THEN
    RAISE EXCEPTION 'leg % of distributed transaction %: a vote and an outcome are given once',
      OLD.leg_no, OLD.dist_tx_id USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER dist_participants_guard
  BEFORE UPDATE OR DELETE ON credits.dist_participants
  FOR EACH ROW EXECUTE FUNCTION credits._dist_participant_guard();
ALTER TABLE credits.dist_participants ENABLE ALWAYS TRIGGER dist_participants_guard;

SELECT ops._make_append_only('credits.dist_events', 'dist_events_');

-- A prepared credit leg must be able to land: closing its account is refused
-- until the transaction is complete (prepare locks the account while it
-- votes, so a concurrent close waits and then sees the vote).
CREATE OR REPLACE FUNCTION credits._refuse_close_with_pending_credit()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_tx bigint;
BEGIN
  SELECT p.dist_tx_id INTO v_tx FROM credits.dist_participants p
   WHERE p.account_id = NEW.account_id AND p.amount > 0 AND p.outcome IS NULL AND p.vote = 'yes' LIMIT 1;
  IF FOUND THEN
    PERFORM ops._fail('SX114', format('account %s has a pending credit from distributed transaction %s',
                                      NEW.account_id, v_tx),
                      jsonb_build_object('account_id', NEW.account_id, 'dist_tx_id', v_tx));
  END IF;
  RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER accounts_refuse_close_with_pending_credit
  BEFORE UPDATE OF status ON credits.accounts
  FOR EACH ROW WHEN (NEW.status = 'closed' AND OLD.status <> 'closed')
  EXECUTE FUNCTION credits._refuse_close_with_pending_credit();

CREATE OR REPLACE FUNCTION credits._dist_event(p_tx bigint, p_leg int, p_event text, p_detail jsonb DEFAULT '{}')
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  INSERT INTO credits.dist_events (dist_tx_id, leg_no, event, detail) VALUES (p_tx, p_leg, p_event, coalesce(p_detail, '{}'));
$$;
