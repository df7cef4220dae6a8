-- Top-up paid by card. The card number and expiry are encrypted (AES-256-GCM,
-- payment keyring) bound to (tenant, account, entry, field); the holder's
-- name, IP address and user agent are personal data, encrypted under the
-- data subject's own key (privacy.subject_keys) so erasure can shred them.
-- Nothing returned, logged or audited ever shows more than the last four digits.

-- Luhn check on 12 to 19 digits (spaces and dashes allowed).
CREATE OR REPLACE FUNCTION vault._card_digits(p_card text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
  d text := regexp_replace(coalesce(p_card, ''), '[ -]', '', 'g');
  s int := 0;
  x int;
BEGIN
  IF d !~ '^[0-9]{12,19}$' THEN
    RETURN NULL;
  END IF;
  FOR i IN 1..length(d) LOOP
    x := substr(d, length(d) - i + 1, 1)::int;
    IF i % 2 = 0 THEN x := x * 2; IF x > 9 THEN x := x - 9; END IF; END IF;
    s := s + x;
  END LOOP;
  RETURN CASE WHEN s % 10 = 0 THEN d END;
END
$$;

CREATE OR REPLACE FUNCTION vault._mask(p_last4 text)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT '**** **** **** ' || p_last4 $$;

-- IPv4 /24 or IPv6 /48: enough for fraud statistics, not a person.
CREATE OR REPLACE FUNCTION vault._mask_ip(p_ip inet)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT host(network(set_masklen(p_ip, CASE WHEN family(p_ip) = 4 THEN 24 ELSE 48 END)))
             || CASE WHEN family(p_ip) = 4 THEN '/24' ELSE '/48' END $$;

CREATE OR REPLACE FUNCTION vault.top_up(
  p_tenant text, p_account bigint, p_amount bigint, p_idem_key text,
  p_card_number text, p_expiry text, p_holder text DEFAULT NULL, p_subject text DEFAULT NULL,
  p_ip text DEFAULT NULL, p_user_agent text DEFAULT NULL,
  OUT entry_id bigint, OUT account_id bigint, OUT amount bigint, OUT balance_after bigint,
  OUT card text, OUT created_at timestamptz, OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_pan   text := vault._card_digits(p_card_number);
  v_last4 text;
  v_ip    inet;
  v_key   text;
  g       record;
  p       vault.payments;
BEGIN
  -- Refusals name at most the last four digits (the message reaches logs).
  IF v_pan IS NULL THEN
    PERFORM ops._fail('SX201', format('card number ending %s is not a valid card number',
                                      coalesce(right(regexp_replace(coalesce(p_card_number, ''), '[^0-9]', '', 'g'), 4), '')),
                      jsonb_build_object('argument', 'card_number'));
  END IF;
  IF p_expiry IS NULL OR p_expiry !~ '^(0[1-9]|1[0-2])/[0-9]{2}$' THEN
    PERFORM ops._fail('SX201', 'expiry must be MM/YY', jsonb_build_object('argument', 'expiry'));
  END IF;
  IF (p_holder IS NOT NULL OR p_ip IS NOT NULL OR p_user_agent IS NOT NULL) AND p_subject IS NULL THEN
    PERFORM ops._fail('SX007', 'personal data needs a data subject id', jsonb_build_object('argument', 'subject'));
  END IF;
  IF p_ip IS NOT NULL THEN
    BEGIN
      v_ip := p_ip::inet;
    EXCEPTION WHEN invalid_text_representation THEN
      PERFORM ops._fail('SX007', 'ip is not an IP address', jsonb_build_object('argument', 'ip'));
    END;
  END IF;
  v_last4 := right(v_pan, 4);

  SELECT * INTO g FROM credits.grant_credits(p_tenant, p_account, p_amount, p_idem_key, 'card top-up ' || vault._mask(v_last4));
  entry_id := g.entry_id; account_id := g.account_id; amount := g.amount; balance_after := g.balance_after;
  created_at := g.created_at; replayed := g.replayed; card := vault._mask(v_last4);
  IF replayed THEN
    -- A replay matches on every argument: amount, account and reason (grant_credits
    -- compared them), the whole card number and expiry (by their keyed hash), the
    -- data subject and the holder's name. The IP address and user agent describe
    -- the request, not the payment: a retry may come from elsewhere.
    SELECT * INTO p FROM vault.payments x WHERE x.entry_id = g.entry_id;
    IF NOT FOUND
       OR p.card_hmac IS DISTINCT FROM vault._card_hmac(p.key_id, p_tenant, p_account, p.entry_id, v_pan, p_expiry)
          AND (p.card_hmac IS NOT NULL
               OR (vault._reveal(p.entry_id)).pan IS DISTINCT FROM v_pan
               OR (vault._reveal(p.entry_id)).expiry IS DISTINCT FROM p_expiry)
       OR p.subject_id IS DISTINCT FROM p_subject
       OR (p.holder_ct IS NULL) <> (p_holder IS NULL)
       OR p.holder_ct IS NOT NULL
          AND privacy._decrypt(p.subject_id, p.holder_ct, vault._aad('pii', p_tenant, p_account, p.entry_id, 'holder'))
              IS DISTINCT FROM p_holder THEN
      PERFORM ops._fail('SX005', 'idempotency key was used for another payment',
                        jsonb_build_object('entry_id', g.entry_id));
    END IF;
    RETURN;
  END IF;

  v_key := vault._use_current_key('payment');
  INSERT INTO vault.payments (entry_id, tenant_id, account_id, key_id, pan_ct, expiry_ct, card_hmac, pan_last4,
                              subject_id, holder_ct, ip_masked, ip_ct, ua_ct)
  VALUES (g.entry_id, p_tenant, p_account, v_key,
          vault._encrypt('payment', v_pan, vault._aad('pan', p_tenant, p_account, g.entry_id, 'pan')),
          vault._encrypt('payment', p_expiry, vault._aad('pan', p_tenant, p_account, g.entry_id, 'expiry')),
          vault._card_hmac(v_key, p_tenant, p_account, g.entry_id, v_pan, p_expiry),
          v_last4, p_subject,
          privacy._encrypt(p_subject, p_holder, vault._aad('pii', p_tenant, p_account, g.entry_id, 'holder')),
          vault._mask_ip(v_ip),
          privacy._encrypt(p_subject, v_ip::text, vault._aad('pii', p_tenant, p_account, g.entry_id, 'ip')),
          privacy._encrypt(p_subject, p_user_agent, vault._aad('pii', p_tenant, p_account, g.entry_id, 'user_agent')));
END
$$;
COMMENT ON FUNCTION vault.top_up(text, bigint, bigint, text, text, text, text, text, text, text) IS
  'Grant credits paid by card: the card number, expiry and holder are stored encrypted (AES-256-GCM, bound to '
  'their row), the IP masked; idempotent by p_idem_key. Returns the entry with the masked card; SX201 invalid '
  'card, SX003 invalid amount, SX202 key unavailable, SX005 key reused.';

-- A payment as anyone may see it: masked card, masked IP; the holder's name
-- only while the subject's key exists ('[erased]' after erasure).
CREATE OR REPLACE FUNCTION vault.get_payment(p_tenant text, p_entry bigint,
  OUT entry_id bigint, OUT account_id bigint, OUT card text, OUT key_id text, OUT subject_id text,
  OUT holder text, OUT ip_masked text, OUT created_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  p vault.payments;
BEGIN
  SELECT * INTO p FROM vault.payments x WHERE x.entry_id = p_entry AND x.tenant_id = p_tenant;
  IF NOT FOUND THEN
    PERFORM ops._fail('SX204', format('no card payment for entry %s', p_entry), jsonb_build_object('entry_id', p_entry));
  END IF;
  entry_id := p.entry_id; account_id := p.account_id; card := vault._mask(p.pan_last4); key_id := p.key_id;
  subject_id := p.subject_id; ip_masked := p.ip_masked; created_at := p.created_at;
  holder := CASE WHEN p.holder_ct IS NULL THEN NULL
                 ELSE coalesce(privacy._decrypt(p.subject_id, p.holder_ct,
                                                vault._aad('pii', p.tenant_id, p.account_id, p.entry_id, 'holder')),
                               '[erased]') END;
END
$$;
COMMENT ON FUNCTION vault.get_payment(text, bigint) IS
  'A card payment as anyone may see it: masked card, masked IP, and the holder''s name while the subject''s key '
  'exists (''[erased]'' after erasure). SX204 unknown payment.';

-- The full card data, for the owner only (settlement, tests): private.
CREATE OR REPLACE FUNCTION vault._reveal(p_entry bigint, OUT pan text, OUT expiry text)
LANGUAGE sql STABLE
AS $$
  SELECT vault._decrypt('payment', p.pan_ct, vault._aad('pan', p.tenant_id, p.account_id, p.entry_id, 'pan')),
         vault._decrypt('payment', p.expiry_ct, vault._aad('pan', p.tenant_id, p.account_id, p.entry_id, 'expiry'))
    FROM vault.payments p WHERE p.entry_id = p_entry
$$;
