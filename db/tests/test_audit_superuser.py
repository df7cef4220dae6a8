"""A hostile database superuser, with an exported checkpoint in the verifier's hands.

The superuser can read every file the server's OS user can (pg_read_file,
PL/Python), disable any trigger, edit the catalog and register keys of their
own. What they cannot read is the audit signer's private key (root-only, outside
the database), and verifiers pin the signer's public key outside the database.
Each attack of the kind a DBA would try is caught (stream and seq named) or refused.
"""

from __future__ import annotations

import json

import psycopg
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from helpers import call, pubkey, raises, setup_accounts, sign, signer_key
from shieldx import signer
from shieldx.cli import main
from test_audit_tamper import checkpoint, history, rechain, tamper

ZERO_SIG = bytes(64)


def guards(db, table, on, *names):
    """Switch a table's guards off (DISABLE) or back on (ENABLE ALWAYS), as a superuser can."""
    mode = "ENABLE ALWAYS" if on else "DISABLE"
    db.execute(f"ALTER TABLE {table} " + ", ".join(f"{mode} TRIGGER {n}" for n in names))


def export(db):
    return db.execute("SELECT audit.export_checkpoint() AS d").fetchone()["d"]


def cli_verify(dsn, *args):
    return CliRunner().invoke(main, ["audit", "verify", "--url", dsn, "--pubkey", pubkey().hex(), *args])


def flat(text):
    """CLI output without the console's line wrapping."""
    return " ".join(text.split())


def attacker_key():
    key = Ed25519PrivateKey.generate()
    return key, key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def resign_everything(db, key, pub):
    """What a superuser with a key of their own does: register it and re-sign every checkpoint with it."""
    kid = call(db, "audit.register_signing_key", pub)["register_signing_key"]
    guards(db, "audit.checkpoint_signatures", False, "append_only")
    prev = signer.ZERO32
    for c in db.execute(
        """SELECT c.checkpoint_id, audit._micros(c.created_at) AS created_at_us, c.reason, c.streams, c.entries,
                  c.root, c.prev_sig, c.key_id FROM audit.checkpoints c
             JOIN audit.checkpoint_signatures s USING (checkpoint_id) ORDER BY 1"""
    ).fetchall():
        statement = signer.checkpoint_statement(c, prev)
        sig = key.sign(statement)
        db.execute(
            "UPDATE audit.checkpoint_signatures SET key_id = %s, prev_signed = %s, sig = %s WHERE checkpoint_id = %s",
            (kid, prev, sig, c["checkpoint_id"]),
        )
        prev = signer.hashlib.sha256(statement + sig).digest()
    guards(db, "audit.checkpoint_signatures", True, "append_only")
    return kid


# -- 1. Re-signing ---------------------------------------------------------------------------------------------------


def test_the_signer_private_key_is_out_of_reach_of_sql_and_of_the_postgres_os_user(db):
    path = str(signer_key())
    with pytest.raises(psycopg.Error) as denied:
        db.execute("SELECT pg_read_file(%s)", (path,))
    assert "Permission denied" in str(denied.value)
    with pytest.raises(psycopg.Error) as denied:
        db.execute("DO $$ open(%s).read() $$ LANGUAGE plpython3u".replace("%s", "'" + path.replace("'", "''") + "'"))
    assert "Permission denied" in str(denied.value)
    # The public half is what the database holds, once the signer ran.
    setup_accounts(db)
    checkpoint(db)
    assert db.execute("SELECT public_key FROM audit.signing_keys").fetchone()["public_key"] == pubkey()


def test_rewritten_chain_with_recomputed_hmac_is_caught_by_the_ed25519_signature(db, dsn):
    a, _ = history(db)
    doc = export(db)
    # Rewrite a ledger entry, re-chain it, and re-make the last checkpoint's heads, root and HMAC with the
    # HMAC key the superuser can read (it is the server's): everything the database alone could check.
    tamper(
        db,
        "UPDATE audit.log SET payload = replace(payload, '\"amount\":-1', '\"amount\":-9') "
        "WHERE stream = %s AND seq = 2",
        f"ledger/{a}",
    )
    rechain(db, f"ledger/{a}", 2)
    cid = doc["checkpoint_id"]
    guards(db, "audit.checkpoint_heads", False, "append_only")
    guards(db, "audit.checkpoints", False, "append_only")
    db.execute(
        """UPDATE audit.checkpoint_heads h SET hash = l.hash FROM audit.log l
            WHERE h.checkpoint_id = %s AND l.stream = h.stream AND l.seq = h.seq""",
        (cid,),
    )
    db.execute(
        """UPDATE audit.checkpoints c SET root = audit._merkle_root(ARRAY(
             SELECT audit._leaf(h.stream, h.seq, h.hash) FROM audit.checkpoint_heads h
              WHERE h.checkpoint_id = c.checkpoint_id ORDER BY h.stream)) WHERE c.checkpoint_id = %s""",
        (cid,),
    )
    db.execute(
        """UPDATE audit.checkpoints c SET sig = (vault._hmac(c.key_id, ARRAY[audit._checkpoint_msg(c)])).sigs[1]
            WHERE c.checkpoint_id = %s""",
        (cid,),
    )
    guards(db, "audit.checkpoint_heads", True, "append_only")
    guards(db, "audit.checkpoints", True, "append_only")
    # The journal still has the real amount: edit it too, so only the signatures are left to tell.
    guards(db, "credits.entries", False, "entries_append_only")
    db.execute("UPDATE credits.entries SET amount = -9 WHERE account_id = %s AND seq = 2", (a,))
    guards(db, "credits.entries", True, "entries_append_only")
    v = call(db, "audit.verify", False, False)
    assert (v["ok"], v["stream"], v["seq"]) == (False, f"checkpoint/{cid}", cid)
    assert v["problem"].startswith("checkpoint signature (Ed25519) does not verify")
    # The signer will not sign on top of it either.
    call(db, "audit.checkpoint")
    with pytest.raises(signer.Refused) as refused:
        sign(db)
    assert refused.value.stream == f"checkpoint/{cid}"


def test_a_superuser_key_of_their_own_fools_the_database_but_not_a_pinned_verifier(db, dsn, tmp_path):
    a, _ = history(db)
    doc = export(db)
    (tmp_path / "cp.json").write_text(json.dumps(doc))
    # Rewrite the chain, re-make the checkpoint with the HMAC key, and re-sign every checkpoint with a key
    # registered by the superuser: the database's own checks now pass.
    tamper(
        db,
        "UPDATE audit.log SET payload = replace(payload, '\"amount\":-1', '\"amount\":-9') "
        "WHERE stream = %s AND seq = 2",
        f"ledger/{a}",
    )
    rechain(db, f"ledger/{a}", 2)
    guards(db, "credits.entries", False, "entries_append_only")
    db.execute("UPDATE credits.entries SET amount = -9 WHERE account_id = %s AND seq = 2", (a,))
    guards(db, "credits.entries", True, "entries_append_only")
    cid = doc["checkpoint_id"]
    guards(db, "audit.checkpoint_heads", False, "append_only")
    guards(db, "audit.checkpoints", False, "append_only")
    db.execute(
        """UPDATE audit.checkpoint_heads h SET hash = l.hash FROM audit.log l
            WHERE h.checkpoint_id = %s AND l.stream = h.stream AND l.seq = h.seq""",
        (cid,),
    )
    db.execute(
        """UPDATE audit.checkpoints c SET root = audit._merkle_root(ARRAY(
             SELECT audit._leaf(h.stream, h.seq, h.hash) FROM audit.checkpoint_heads h
              WHERE h.checkpoint_id = c.checkpoint_id ORDER BY h.stream)) WHERE c.checkpoint_id = %s""",
        (cid,),
    )
    db.execute("UPDATE audit.checkpoints c SET sig = (vault._hmac(c.key_id, ARRAY[audit._checkpoint_msg(c)])).sigs[1]")
    guards(db, "audit.checkpoint_heads", True, "append_only")
    guards(db, "audit.checkpoints", True, "append_only")
    key, pub = attacker_key()
    kid = resign_everything(db, key, pub)
    assert call(db, "audit.verify", False, True)["ok"], "the database alone cannot tell: a superuser owns it"
    # The CLI, with the signer's public key pinned, checks every signature itself.
    r = cli_verify(dsn)
    assert r.exit_code == 1, r.output
    assert (
        f"stream checkpoint/{cid} seq {cid}: checkpoint signed by key {kid}, not by the key in force "
        f"{signer.key_id(pubkey())}: an unannounced key"
    ) in flat(r.output)
    # The exported checkpoint, against the pinned key: the database no longer holds it as it was signed.
    x = call(db, "audit.verify_export", json.dumps(doc), pubkey())
    assert (x["ok"], x["stream"], x["seq"]) == (False, f"checkpoint/{cid}", cid)
    assert "no longer holds signed checkpoint" in x["problem"]
    # A document re-signed with the superuser's key is refused against the pinned key, however valid.
    forged = dict(doc, signature=dict(doc["signature"], key_id=kid))
    y = call(db, "audit.verify_export", json.dumps(forged), pubkey())
    assert not y["ok"] and f"not by the pinned key {signer.key_id(pubkey())}" in y["problem"]
    r = cli_verify(dsn, "--against", str(tmp_path / "cp.json"))
    assert r.exit_code == 1 and "differs from exported checkpoint" in r.output
    # And the signer refuses to go on from a checkpoint it did not sign.
    call(db, "audit.checkpoint")
    with pytest.raises(signer.Refused) as refused:
        sign(db)
    assert "not one this signer signed" in refused.value.problem


def test_an_all_zero_signature_is_refused_everywhere(db, dsn, tmp_path):
    history(db)
    doc = export(db)
    cid = doc["checkpoint_id"]
    zero = dict(doc, signature=dict(doc["signature"], sig="00" * 64))
    for pinned in (None, pubkey()):
        x = call(db, "audit.verify_export", json.dumps(zero), pinned)
        assert (x["ok"], x["stream"], x["seq"]) == (False, f"checkpoint/{cid}", cid)
        assert "signature (Ed25519) does not verify" in x["problem"]
    (tmp_path / "zero.json").write_text(json.dumps(zero))
    r = cli_verify(dsn, "--against", str(tmp_path / "zero.json"))
    assert r.exit_code == 1 and "does not verify with the pinned key" in r.output
    with raises("SX208"):
        call(db, "audit.sign_checkpoint", cid, signer.key_id(pubkey()), ZERO_SIG)  # signed already
    call(db, "audit.checkpoint")
    new = db.execute("SELECT max(checkpoint_id) AS m FROM audit.checkpoints").fetchone()["m"]
    with raises("SX208"):
        call(db, "audit.sign_checkpoint", new, signer.key_id(pubkey()), ZERO_SIG)
    # Written straight into the table instead: verify() names it.
    guards(db, "audit.checkpoint_signatures", False, "append_only")
    db.execute("UPDATE audit.checkpoint_signatures SET sig = %s WHERE checkpoint_id = %s", (ZERO_SIG, cid))
    guards(db, "audit.checkpoint_signatures", True, "append_only")
    v = call(db, "audit.verify", False, False)
    assert (v["ok"], v["stream"], v["seq"]) == (False, f"checkpoint/{cid}", cid)


# -- 2. Cutting exported entries behind a forged anchor ----------------------------------------------------------------


def forge_anchor(db, stream, seq, hash_, checkpoint_id, sig, key_id):
    """Insert a retention anchor with its HMAC (the superuser can read that key) and the given Ed25519 signature."""
    db.execute(
        """INSERT INTO audit.anchors (stream, seq, hash, checkpoint_id, key_id, sig)
           SELECT %(s)s, %(n)s, %(h)s, %(c)s, k,
                  (vault._hmac(k, ARRAY[audit._anchor_msg(%(s)s, %(n)s, %(h)s, %(c)s)])).sigs[1]
             FROM vault._current_key_id('audit') k""",
        {"s": stream, "n": seq, "h": hash_, "c": checkpoint_id},
    )
    if sig is not None:
        db.execute(
            "INSERT INTO audit.anchor_signatures (stream, seq, key_id, sig) VALUES (%s, %s, %s, %s)",
            (stream, seq, key_id, sig),
        )


@pytest.mark.parametrize("cut", ["tail", "head"])
@pytest.mark.parametrize("forgery", ["zero", "own-key"])
def test_entries_cut_behind_a_forged_anchor_are_caught(db, dsn, tmp_path, cut, forgery):
    a, _ = history(db)
    stream = f"ledger/{a}"
    call(db, "credits.consume", "acme", a, 1, "after-export-1")
    checkpoint(db)
    doc = export(db)
    (tmp_path / "cp.json").write_text(json.dumps(doc))
    cid = doc["checkpoint_id"]
    head_seq, head_hash = doc["heads"][stream][0], bytes.fromhex(doc["heads"][stream][1])
    kid = signer.key_id(pubkey())
    if forgery == "own-key":
        key, pub = attacker_key()
        kid = call(db, "audit.register_signing_key", pub)["register_signing_key"]
    if cut == "tail":  # the last entry, and the anchor at the exported head
        n = head_seq
        anchor_seq, anchor_hash = head_seq, head_hash
    else:  # the first entries, behind an anchor at the second
        n = 2
        anchor_seq = 2
        anchor_hash = bytes(
            db.execute("SELECT hash FROM audit.log WHERE stream = %s AND seq = 2", (stream,)).fetchone()["hash"]
        )
    first = db.execute("SELECT min(checkpoint_id) AS m FROM audit.checkpoints").fetchone()["m"]
    statement = signer.anchor_statement(stream, anchor_seq, anchor_hash, first)
    sig = ZERO_SIG if forgery == "zero" else key.sign(statement)
    forge_anchor(db, stream, anchor_seq, anchor_hash, first, sig, kid)
    # With a signature the registered keys accept, the removal triggers let the entries go; with zeros they refuse.
    statement_sql = (
        "DELETE FROM audit.log WHERE stream = %s AND seq = %s"
        if cut == "tail"
        else "DELETE FROM audit.log WHERE stream = %s AND seq <= %s"
    )
    if forgery == "zero":
        with raises("42501"):
            db.execute(statement_sql, (stream, n))
        guards(db, "audit.log", False, "append_only", "removal")
        db.execute(statement_sql, (stream, n))
        guards(db, "audit.log", True, "append_only", "removal")
    else:
        db.execute(statement_sql, (stream, n))
    if cut == "tail":  # and the checkpoints that covered it
        guards(db, "audit.checkpoint_heads", False, "append_only", "removal")
        for t in ("audit.checkpoint_signatures", "audit.checkpoint_heads", "audit.checkpoints"):
            if t != "audit.checkpoint_heads":
                guards(db, t, False, "append_only")
            db.execute(f"DELETE FROM {t} WHERE checkpoint_id = %s", (cid,))
            if t != "audit.checkpoint_heads":
                guards(db, t, True, "append_only")
        guards(db, "audit.checkpoint_heads", True, "append_only", "removal")
    # Pinned verifiers refuse the anchor and see the cut.
    x = call(db, "audit.verify_export", json.dumps(doc), pubkey())
    assert not x["ok"]
    problems = {
        (p["stream"], p["seq"])
        for p in db.execute(
            "SELECT * FROM audit._signature_problems(%s) "
            "UNION ALL SELECT * FROM audit._missing_heads(NULL, %s::jsonb, %s)",
            (pubkey(), json.dumps(doc["heads"]), pubkey()),
        )
    }
    assert (stream, anchor_seq + 1) in problems or (stream, head_seq) in problems, problems
    r = cli_verify(dsn, "--against", str(tmp_path / "cp.json"))
    assert r.exit_code == 1, r.output
    assert f"stream {stream}" in flat(r.output) or f"checkpoint/{cid}" in r.output
    if forgery == "zero":  # the database alone sees it too, and so does the unpinned export check
        v = call(db, "audit.verify", False, False)
        assert not v["ok"]
        unpinned = call(db, "audit.verify_export", json.dumps(doc))
        assert not unpinned["ok"]
        assert (stream, anchor_seq + 1) in {
            (p["stream"], p["seq"]) for p in db.execute("SELECT * FROM audit._signature_problems()")
        }


# -- 3. The retention exception is no longer a setting ---------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM credits.entries",
        "DELETE FROM audit.log",
        "DELETE FROM audit.checkpoints",
        "DELETE FROM audit.checkpoint_heads",
        "DELETE FROM audit.checkpoint_signatures",
        "DELETE FROM credits.entries_archive",
        "DELETE FROM privacy.erasures",
    ],
)
def test_the_old_retention_setting_opens_nothing(db, dsn, statement):
    history(db)
    call(db, "privacy.erase_subject", "someone", "erase-1")
    before = db.execute("SELECT count(*) AS n FROM audit.log").fetchone()["n"]
    with psycopg.connect(dsn) as conn:  # one transaction, as the attack needs
        conn.execute("SELECT set_config('shieldx.retention_txid', txid_current()::text, true)")
        with raises("42501"):
            conn.execute(statement)
    assert db.execute("SELECT count(*) AS n FROM audit.log").fetchone()["n"] == before
    assert db.execute("SELECT to_regprocedure('ops._allow_removal(boolean)') AS f").fetchone()["f"] is None
    assert call(db, "audit.verify")["ok"]


def test_retention_removal_is_refused_without_a_signed_anchor_and_names_the_first_uncovered_entry(db):
    a, _ = history(db)
    call(db, "audit.cleanup_old_transactions", 0)  # anchors planned, not signed
    with raises("42501") as refused:
        db.execute("DELETE FROM credits.entries WHERE account_id = %s AND seq = 1", (a,))
    assert f"ledger/{a} up to 1 is not covered" in str(refused.value)


# -- 4. Triggers switched off through the catalog ---------------------------------------------------------------------


def catalog_trigger(db, table, name, mode):
    db.execute("UPDATE pg_trigger SET tgenabled = %s WHERE tgrelid = %s::regclass AND tgname = %s", (mode, table, name))


def test_a_row_changed_while_its_trigger_was_off_in_the_catalog_is_found_after_it_is_back(db, connect):
    a, _b = history(db)
    catalog_trigger(db, "credits.accounts", "audit_log", "D")  # no event trigger sees this
    other = connect()  # a new session loads the edited catalog
    other.execute("UPDATE credits.accounts SET status = 'closed', name = 'renamed' WHERE account_id = %s", (a,))
    catalog_trigger(db, "credits.accounts", "audit_log", "A")
    assert db.execute("SELECT count(*) AS n FROM audit.log WHERE stream LIKE 'ddl/%'").fetchone()["n"] == 0
    v = call(db, "audit.verify", False, False)
    last = db.execute("SELECT max(seq) AS m FROM audit.log WHERE stream = %s", (f"credits.accounts/{a}",)).fetchone()
    assert (v["ok"], v["stream"], v["seq"]) == (False, f"credits.accounts/{a}", last["m"])
    assert v["problem"] == f"credits.accounts row {a} differs from its last audited state (changed with auditing off?)"


def test_a_row_written_while_the_trigger_was_off_has_no_audit_entry(db, connect):
    history(db)
    catalog_trigger(db, "credits.tenants", "audit_log", "D")
    connect().execute("INSERT INTO credits.tenants (tenant_id, name) VALUES ('ghost', 'Ghost')")
    catalog_trigger(db, "credits.tenants", "audit_log", "A")
    chain = db.execute("SELECT 'credits.tenants/' || (abs(hashtext('ghost')) % 16) AS s").fetchone()["s"]
    found = {(p["stream"], p["problem"]) for p in db.execute("SELECT * FROM audit.verify_streams()")}
    assert (chain, "credits.tenants row ghost has no audit entry (written with auditing off?)") in found


def test_a_trigger_left_off_with_the_ddl_watch_table_edited_to_match_is_reported(db):
    history(db)
    catalog_trigger(db, "credits.accounts", "audit_log", "D")
    db.execute(
        """UPDATE audit.ddl_watched SET facts = array_replace(facts, 'trigger audit_log: ENABLE ALWAYS',
                                                            'trigger audit_log: DISABLE')
            WHERE kind = 'table' AND name = 'credits.accounts'"""
    )
    v = call(db, "audit.verify", False, False)
    assert (v["ok"], v["stream"], v["seq"]) == (False, "ddl/credits.accounts", 0)
    assert v["problem"] == (
        "trigger audit_log on credits.accounts is DISABLE in the catalog (pg_trigger.tgenabled = 'D'), "
        "not ENABLE ALWAYS"
    )
    # Switched off with ALTER TABLE instead (logged), and the watch table edited: still reported from the catalog.
    catalog_trigger(db, "credits.accounts", "audit_log", "A")
    db.execute("ALTER TABLE credits.entries DISABLE TRIGGER audit_log")
    problems = {(p["stream"], p["problem"]) for p in db.execute("SELECT * FROM audit._trigger_problems()")}
    assert any(s == "ddl/credits.entries" and "audit_log on credits.entries is DISABLE" in p for s, p in problems)
    db.execute("ALTER TABLE credits.entries ENABLE ALWAYS TRIGGER audit_log")


def test_a_change_behind_the_watch_is_found_against_the_ddl_chain_not_the_editable_table(db):
    history(db)
    db.execute("ALTER TABLE credits.tenants ADD COLUMN note text")  # logged: 'column note text' added
    seq = db.execute("SELECT max(seq) AS m FROM audit.log WHERE stream = 'ddl/credits.tenants'").fetchone()["m"]
    db.execute("ALTER EVENT TRIGGER audit_ddl_watch DISABLE")
    db.execute("ALTER EVENT TRIGGER audit_ddl_watch_drop DISABLE")
    db.execute("ALTER TABLE credits.tenants DROP COLUMN note")
    db.execute(
        """UPDATE audit.ddl_watched SET facts = array_remove(facts, 'column note text')
            WHERE kind = 'table' AND name = 'credits.tenants'"""
    )
    db.execute("ALTER EVENT TRIGGER audit_ddl_watch ENABLE ALWAYS")
    db.execute("ALTER EVENT TRIGGER audit_ddl_watch_drop ENABLE ALWAYS")
    assert list(db.execute("SELECT * FROM audit._ddl_watch_problems()")) == []  # the editable table agrees
    v = call(db, "audit.verify", False, False)
    assert (v["ok"], v["stream"], v["seq"]) == (False, "ddl/credits.tenants", seq)
    assert v["problem"] == (
        "table credits.tenants lacks 'column note text', which its DDL chain last logged as added "
        "(changed behind the DDL watch)"
    )


# -- 7. Operator checks include journal content ------------------------------------------------------------------------


def test_a_direct_edit_of_an_entry_amount_is_caught_by_the_operator_checks(db, dsn):
    a, _ = history(db)
    guards(db, "credits.entries", False, "entries_append_only")
    db.execute("UPDATE credits.entries SET amount = -1000 WHERE account_id = %s AND seq = 3", (a,))
    guards(db, "credits.entries", True, "entries_append_only")
    assert call(db, "audit.verify")["ok"], "the chains and the counts alone do not see it"
    v = call(db, "audit.verify", False, True, True)
    assert (v["ok"], v["stream"], v["seq"]) == (False, f"ledger/{a}", 3)
    assert v["problem"] == "journal entry differs from its audit entry (edited behind the triggers' back)"
    inc = call(db, "audit.verify", True, True, True)  # after the last checkpoint: not in the incremental range
    assert inc["ok"]
    call(db, "credits.consume", "acme", a, 1, "after")
    guards(db, "credits.entries", False, "entries_append_only")
    db.execute(
        "UPDATE credits.entries SET amount = -7 WHERE account_id = %s AND seq = (SELECT max(seq) FROM credits.entries "
        "WHERE account_id = %s)",
        (a, a),
    )
    guards(db, "credits.entries", True, "entries_append_only")
    inc = call(db, "audit.verify", True, True, True)
    assert not inc["ok"] and inc["stream"] == f"ledger/{a}"
    r = CliRunner().invoke(main, ["audit", "verify", "--url", dsn])  # the journal's content by default
    assert r.exit_code == 1
    assert f"stream ledger/{a} seq 3: journal entry differs from its audit entry" in flat(r.output)
    r = CliRunner().invoke(main, ["audit", "verify", "--url", dsn, "--no-journal"])
    assert r.exit_code == 0 and "journal content NOT compared" in r.output


def test_the_signer_refuses_a_rolled_back_database(db):
    history(db)  # signed: the signer remembers its last checkpoint for this database
    call(db, "credits.create_tenant", "later", "Later")
    checkpoint(db)
    last = db.execute("SELECT max(checkpoint_id) AS m FROM audit.checkpoint_signatures").fetchone()["m"]
    # Back to the state before the last signed checkpoint (as a restore to an earlier point would be).
    guards(db, "audit.checkpoint_heads", False, "append_only", "removal")
    for t in ("audit.checkpoint_signatures", "audit.checkpoint_heads", "audit.checkpoints"):
        if t != "audit.checkpoint_heads":
            guards(db, t, False, "append_only")
        db.execute(f"DELETE FROM {t} WHERE checkpoint_id = %s", (last,))
        if t != "audit.checkpoint_heads":
            guards(db, t, True, "append_only")
    guards(db, "audit.checkpoint_heads", True, "append_only", "removal")
    call(db, "audit.checkpoint")
    with pytest.raises(signer.Refused) as refused:
        sign(db)
    assert (refused.value.stream, refused.value.seq) == (f"checkpoint/{last}", last)
    assert "no longer holds the last checkpoint this signer signed" in refused.value.problem


def test_a_column_added_by_a_migration_is_not_a_change_of_the_rows(db):
    history(db)
    db.execute("ALTER TABLE credits.tenants ADD COLUMN tier int NOT NULL DEFAULT 3")
    assert list(db.execute("SELECT * FROM audit._state_problems()")) == []
    assert call(db, "audit.verify")["ok"]
