"""The audit log detects tampering by a superuser, and names the first broken entry.

Each test plays an attacker with superuser rights (who can disable the
append-only triggers) but without the audit HMAC key.
"""

from __future__ import annotations

import json

import pytest

from helpers import call, raises, setup_accounts, sign


def verify(db, incremental=False):
    return call(db, "audit.verify", incremental, True)


def checkpoint(db):
    """A checkpoint, signed by the audit signer (outside the database)."""
    c = call(db, "audit.checkpoint")
    sign(db)
    return c


def history(db):
    """Two accounts, a few movements, a status change, a signed checkpoint."""
    a, b = setup_accounts(db)
    for i in range(4):
        call(db, "credits.consume", "acme", a, 1, f"c{i}")
    call(db, "credits.transfer", "acme", a, b, 5, "t1")
    call(db, "credits.set_account_status", "acme", b, "frozen")
    checkpoint(db)
    return a, b


def tamper(db, sql, *args):
    """Run a statement the way a superuser would have to: with the guards off."""
    db.execute("ALTER TABLE audit.log DISABLE TRIGGER append_only, DISABLE TRIGGER removal")
    try:
        db.execute(sql, args)
    finally:
        db.execute("ALTER TABLE audit.log ENABLE ALWAYS TRIGGER append_only, ENABLE ALWAYS TRIGGER removal")


def rechain(db, stream, from_seq):
    """Recompute every hash from from_seq on with the public algorithm (no key needed)."""
    last = db.execute("SELECT max(seq) AS m FROM audit.log WHERE stream = %s", (stream,)).fetchone()["m"]
    db.execute("ALTER TABLE audit.log DISABLE TRIGGER append_only, DISABLE TRIGGER removal")
    try:
        for seq in range(from_seq, last + 1):
            db.execute(
                """
                UPDATE audit.log l SET prev_hash = p.hash FROM audit.log p
                 WHERE l.stream = %(s)s AND l.seq = %(n)s AND p.stream = %(s)s AND p.seq = %(n)s - 1""",
                {"s": stream, "n": seq},
            )
            db.execute(
                """
                UPDATE audit.log l SET hash = audit._hash_v1(l.prev_hash, l.stream, l.seq, l.source, l.op, l.actor,
                       l.app, l.txid, l.logged_at, l.payload)
                 WHERE l.stream = %s AND l.seq = %s""",
                (stream, seq),
            )
    finally:
        db.execute("ALTER TABLE audit.log ENABLE ALWAYS TRIGGER append_only, ENABLE ALWAYS TRIGGER removal")


def test_untouched_history_verifies_in_full_and_incrementally(db):
    a, _ = history(db)
    full = verify(db)
    assert full["ok"] and full["broken_streams"] == 0 and full["problem"] is None
    assert full["entries_checked"] >= 10
    call(db, "credits.consume", "acme", a, 1, "after-checkpoint")
    inc = verify(db, incremental=True)
    assert inc["ok"] and inc["since_checkpoint"] is not None
    assert inc["entries_checked"] < verify(db)["entries_checked"]


def test_every_change_is_logged_by_triggers_with_the_session_user(db, connect):
    a, _b = history(db)
    app = connect("shieldx_app")
    call(app, "credits.consume", "acme", a, 1, "from-the-api")
    rows = db.execute(
        "SELECT stream, seq, source, op, actor, payload FROM audit.log ORDER BY logged_at, stream, seq"
    ).fetchall()
    sources = {(r["source"], r["op"]) for r in rows}
    assert {
        ("credits.tenants", "INSERT"),
        ("credits.accounts", "INSERT"),
        ("credits.accounts", "UPDATE"),
        ("credits.entries", "INSERT"),
    } <= sources
    ledger = [r for r in rows if r["stream"] == f"ledger/{a}"]
    assert [r["seq"] for r in ledger] == list(range(1, len(ledger) + 1))
    assert ledger[-1]["actor"] == "shieldx_app" and ledger[0]["actor"] == "postgres"
    assert json.loads(ledger[-1]["payload"])["idem_key"] == "from-the-api"
    # A balance change alone is not an account event (the journal entry is).
    assert sum(1 for r in rows if r["source"] == "credits.accounts" and r["op"] == "UPDATE") == 1


def test_superuser_edits_a_payload(db):
    a, _ = history(db)
    tamper(
        db,
        "UPDATE audit.log SET payload = replace(payload, '\"amount\":-1', '\"amount\":-1000') "
        "WHERE stream = %s AND seq = 3",
        f"ledger/{a}",
    )
    r = verify(db)
    assert not r["ok"]
    assert (r["stream"], r["seq"]) == (f"ledger/{a}", 3)
    assert "altered" in r["problem"]


def test_superuser_deletes_an_entry_in_the_middle(db):
    a, _ = history(db)
    tamper(db, "DELETE FROM audit.log WHERE stream = %s AND seq = 3", f"ledger/{a}")
    r = verify(db, incremental=False)
    assert (r["ok"], r["stream"], r["seq"]) == (False, f"ledger/{a}", 3)
    found = db.execute("SELECT stream, min(seq) AS seq FROM audit.verify_streams() GROUP BY stream").fetchall()
    assert found == [{"stream": f"ledger/{a}", "seq": 3}]
    # Without the journal cross-check the chain itself still shows the gap.
    chain = call(db, "audit.verify", False, False)
    assert (chain["stream"], chain["seq"], chain["problem"]) == (f"ledger/{a}", 4, "entries 3 to 3 are missing")


def test_superuser_inserts_a_forged_entry(db):
    _a, b = history(db)
    # A forged entry with a made-up hash ...
    tamper(
        db,
        """INSERT INTO audit.log (stream, seq, source, op, actor, txid, logged_at, payload, prev_hash, hash)
                  SELECT stream, seq + 1, source, op, actor, txid, logged_at, '{"forged":1}', hash, hash
                    FROM audit.log WHERE stream = %s ORDER BY seq DESC LIMIT 1""",
        f"ledger/{b}",
    )
    r = verify(db)
    assert not r["ok"] and r["stream"] == f"ledger/{b}" and r["seq"] == 3 and "altered" in r["problem"]


def test_forged_entry_with_a_correct_hash_has_no_journal_row(db):
    a, _ = history(db)
    last = db.execute("SELECT max(seq) AS m FROM audit.log WHERE stream = %s", (f"ledger/{a}",)).fetchone()["m"]
    tamper(
        db,
        """INSERT INTO audit.log (stream, seq, source, op, actor, app, txid, logged_at, payload, prev_hash, hash)
                  SELECT stream, seq + 1, source, op, actor, app, txid, logged_at, payload, hash,
                         audit._hash_v1(hash, stream, seq + 1, source, op, actor, app, txid,
                                        logged_at, payload)
                    FROM audit.log WHERE stream = %s AND seq = %s""",
        f"ledger/{a}",
        last,
    )
    assert call(db, "audit.verify", False, False)["ok"]  # the chain alone cannot tell ...
    r = verify(db)  # ... the journal can
    assert (r["ok"], r["stream"], r["seq"]) == (False, f"ledger/{a}", last + 1)
    assert r["problem"] == "audit entry has no journal entry"


def test_superuser_swaps_two_entries(db):
    a, _ = history(db)
    db.execute("ALTER TABLE audit.log DISABLE TRIGGER append_only, DISABLE TRIGGER removal")
    db.execute(
        """UPDATE audit.log l SET payload = o.payload, hash = o.hash, prev_hash = o.prev_hash
                    FROM audit.log o
                   WHERE l.stream = %(s)s AND o.stream = %(s)s AND l.seq IN (3, 4) AND o.seq = 7 - l.seq""",
        {"s": f"ledger/{a}"},
    )
    db.execute("ALTER TABLE audit.log ENABLE ALWAYS TRIGGER append_only, ENABLE ALWAYS TRIGGER removal")
    r = verify(db)
    assert (r["ok"], r["stream"], r["seq"]) == (False, f"ledger/{a}", 3)


def test_truncated_tail_is_found_against_an_exported_checkpoint(db, tmp_path):
    _a, _b = history(db)
    doc = db.execute("SELECT audit.export_checkpoint() AS d").fetchone()["d"]
    account_stream = db.execute(
        "SELECT stream FROM audit.log WHERE source = 'credits.accounts' AND op = 'UPDATE'"
    ).fetchone()["stream"]
    # Truncate the tail of a chain AND remove every checkpoint that covered it, signatures included.
    for t in ("audit.checkpoint_signatures", "audit.checkpoint_heads", "audit.checkpoints"):
        removal = ", DISABLE TRIGGER removal" if t == "audit.checkpoint_heads" else ""
        db.execute(f"ALTER TABLE {t} DISABLE TRIGGER append_only{removal}")
        db.execute(f"DELETE FROM {t}")
        db.execute(f"ALTER TABLE {t} ENABLE ALWAYS TRIGGER append_only")
        if removal:
            db.execute(f"ALTER TABLE {t} ENABLE ALWAYS TRIGGER removal")
    tamper(db, "DELETE FROM audit.log WHERE stream = %s AND seq = 2", account_stream)
    # The rows now match their audit state again (the account's last audited row is the frozen one: the
    # status change was cut), so only the account row itself still differs.
    problems = {r["stream"] for r in db.execute("SELECT * FROM audit.verify_streams()")}
    assert problems <= {f"{account_stream}"}, problems
    r = call(db, "audit.verify_export", json.dumps(doc))
    assert (r["ok"], r["stream"], r["seq"]) == (False, "checkpoint/1", 1)
    assert r["problem"] == "the database no longer holds signed checkpoint 1 as exported (rolled back or replaced)"
    found = {
        (x["stream"], x["seq"], x["problem"])
        for x in db.execute("SELECT m.* FROM audit._missing_heads(NULL, %s::jsonb) m", (json.dumps(doc["heads"]),))
    }
    assert (account_stream, 2, "chain truncated: ends at 1, the checkpoint has entry 2") in found


def test_truncated_tail_is_found_by_the_last_checkpoint(db):
    a, _ = history(db)
    last = db.execute("SELECT max(seq) AS m FROM audit.log WHERE stream = %s", (f"ledger/{a}",)).fetchone()["m"]
    tamper(db, "DELETE FROM audit.log WHERE stream = %s AND seq = %s", f"ledger/{a}", last)
    r = call(db, "audit.verify", False, False)
    assert (r["ok"], r["stream"], r["seq"]) == (False, f"ledger/{a}", last)
    assert "truncated" in r["problem"]


def test_whole_chain_recomputed_without_the_key(db):
    a, _ = history(db)
    tamper(
        db,
        "UPDATE audit.log SET payload = replace(payload, '\"amount\":-1', '\"amount\":-2') "
        "WHERE stream = %s AND seq = 2",
        f"ledger/{a}",
    )
    rechain(db, f"ledger/{a}", 2)
    rows = db.execute("SELECT * FROM audit._chain_problems(NULL)").fetchall()
    assert rows == [], "the hash chain alone is consistent again"
    r = call(db, "audit.verify", False, False)
    assert not r["ok"] and r["stream"] == f"ledger/{a}" and "rewritten" in r["problem"]
    # Rewrite the checkpoint too: its signature (HMAC, key outside the database) gives it away.
    last = db.execute("SELECT max(seq) AS m FROM audit.log WHERE stream = %s", (f"ledger/{a}",)).fetchone()["m"]
    db.execute("ALTER TABLE audit.checkpoint_heads DISABLE TRIGGER append_only, DISABLE TRIGGER removal")
    db.execute("ALTER TABLE audit.checkpoints DISABLE TRIGGER append_only")
    db.execute("""UPDATE audit.checkpoint_heads h SET hash = l.hash FROM audit.log l
                   WHERE l.stream = h.stream AND l.seq = h.seq""")
    db.execute("""UPDATE audit.checkpoints c SET root = (SELECT audit._merkle_root(array_agg(
                     audit._leaf(h.stream, h.seq, h.hash) ORDER BY h.stream)) FROM audit.checkpoint_heads h
                   WHERE h.checkpoint_id = c.checkpoint_id)""")
    db.execute("ALTER TABLE audit.checkpoint_heads ENABLE ALWAYS TRIGGER append_only, ENABLE ALWAYS TRIGGER removal")
    db.execute("ALTER TABLE audit.checkpoints ENABLE ALWAYS TRIGGER append_only")
    r = call(db, "audit.verify", False, False)
    assert not r["ok"] and r["problem"] == "checkpoint signature is not valid"
    assert last >= 2


def test_trigger_disabled_write_reenabled(db):
    a, _ = history(db)
    db.execute("ALTER TABLE credits.entries DISABLE TRIGGER audit_log")
    hidden = call(db, "credits.consume", "acme", a, 1, "unaudited")
    db.execute("ALTER TABLE credits.entries ENABLE ALWAYS TRIGGER audit_log")
    r = verify(db)
    assert (r["ok"], r["stream"], r["seq"]) == (False, f"ledger/{a}", hidden["seq"])
    assert "no audit entry" in r["problem"]
    # The next audited write leaves a visible gap in the chain as well.
    call(db, "credits.consume", "acme", a, 1, "audited-again")
    chain = call(db, "audit.verify", False, False)
    assert (chain["stream"], chain["seq"]) == (f"ledger/{a}", hidden["seq"] + 1)
    assert chain["problem"] == f"entries {hidden['seq']} to {hidden['seq']} are missing"


def test_replica_mode_does_not_skip_auditing(db):
    a, _ = history(db)
    db.execute("SET session_replication_role = replica")
    try:
        e = call(db, "credits.consume", "acme", a, 1, "as-replica")
        with raises("42501"):
            db.execute("DELETE FROM audit.log")
    finally:
        db.execute("RESET session_replication_role")
    assert (
        db.execute(
            "SELECT count(*) AS n FROM audit.log WHERE stream = %s AND seq = %s", (f"ledger/{a}", e["seq"])
        ).fetchone()["n"]
        == 1
    )


APP_ATTEMPTS = [
    "UPDATE audit.log SET payload = '{}'",
    "DELETE FROM audit.log",
    "TRUNCATE audit.log",
    "INSERT INTO audit.log (stream, seq, source, op, actor, txid, logged_at, payload, prev_hash, hash) "
    "VALUES ('x', 1, 'x', 'x', 'x', 1, now(), '{}', sha256(''), sha256(''))",
    "SELECT * FROM audit.log",
    "DELETE FROM audit.checkpoints",
    "UPDATE audit.heads SET seq = 0",
    "ALTER TABLE audit.log DISABLE TRIGGER append_only, DISABLE TRIGGER removal",
    "ALTER TABLE credits.entries DISABLE TRIGGER audit_log",
    "SET session_replication_role = replica",
    "SELECT vault._hmac(NULL, ARRAY['\\x00'::bytea])",
    "SELECT vault._reveal(1)",
    "SELECT audit._append('x', 'x', 'x', '{}')",
    "SELECT * FROM privacy.subject_keys",
]


@pytest.mark.parametrize("statement", APP_ATTEMPTS)
def test_application_role_cannot_tamper(db, connect, statement):
    history(db)
    app = connect("shieldx_app")
    with raises("42501"):
        app.execute(statement)


def test_immutability_refuses_even_the_superuser_unless_triggers_are_dropped(db):
    history(db)
    for statement in (
        "UPDATE audit.log SET payload = '{}'",
        "DELETE FROM audit.log",
        "TRUNCATE audit.log",
        "DELETE FROM audit.checkpoints",
        "TRUNCATE audit.anchors, audit.anchor_signatures",
        "DELETE FROM credits.entries",
        "DELETE FROM audit.checkpoint_heads",
        "DELETE FROM audit.heads",
    ):
        with raises("42501"):
            db.execute(statement)


def test_application_role_cannot_run_retention_or_key_management(db, connect):
    history(db)
    app = connect("shieldx_app")
    for statement in (
        "SELECT audit.cleanup_old_transactions(0)",
        "SELECT vault.rotate_key('payment')",
        "SELECT vault.reencrypt(10)",
        "SELECT vault.retire_unused_keys()",
    ):
        with raises("42501"):
            app.execute(statement)
    assert call(app, "audit.verify", False, True)["ok"]  # but it may verify


def test_public_audit_functions_are_security_definer_with_fixed_search_path(db):
    bad = db.execute("""
        SELECT p.oid::regprocedure::text AS fn FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname IN ('audit', 'vault', 'privacy') AND p.proname NOT LIKE '\\_%'
           AND (NOT p.prosecdef OR NOT ('search_path=pg_catalog, pg_temp' = ANY (p.proconfig))
                OR pg_get_userbyid(p.proowner) <> 'shieldx_owner')""").fetchall()
    assert bad == []


def test_superuser_edits_the_journal_row_itself(db):
    a, _ = history(db)
    db.execute("ALTER TABLE credits.entries DISABLE TRIGGER entries_append_only, DISABLE TRIGGER entries_removal")
    db.execute("UPDATE credits.entries SET reason = 'edited' WHERE account_id = %s AND seq = 2", (a,))
    db.execute(
        "ALTER TABLE credits.entries ENABLE ALWAYS TRIGGER entries_append_only, ENABLE ALWAYS TRIGGER entries_removal"
    )
    assert db.execute("SELECT stream, seq, problem FROM audit.verify_journal()").fetchall() == [
        {"stream": f"ledger/{a}", "seq": 2, "problem": "journal entry differs from its audit entry"}
    ]


def test_incremental_verify_finds_breaks_after_the_checkpoint(db):
    a, _ = history(db)
    for i in range(3):
        call(db, "credits.consume", "acme", a, 1, f"late-{i}")
    last = db.execute("SELECT max(seq) AS m FROM audit.log WHERE stream = %s", (f"ledger/{a}",)).fetchone()["m"]
    tamper(db, "UPDATE audit.log SET payload = payload || ' ' WHERE stream = %s AND seq = %s", f"ledger/{a}", last - 1)
    r = verify(db, incremental=True)
    assert (r["ok"], r["stream"], r["seq"]) == (False, f"ledger/{a}", last - 1)
    db.execute("ALTER TABLE credits.entries DISABLE TRIGGER audit_log")
    call(db, "credits.consume", "acme", a, 1, "hidden-late")
    db.execute("ALTER TABLE credits.entries ENABLE ALWAYS TRIGGER audit_log")
    found = db.execute(
        "SELECT problem FROM audit.verify_streams(true, true) WHERE stream = %s AND seq = %s", (f"ledger/{a}", last + 1)
    ).fetchall()
    assert found == [{"problem": "journal entry has no audit entry (written with auditing disabled?)"}]


def test_audit_triggers_are_attached_always_to_every_audited_table(db):
    tables = [
        "credits.entries",
        "credits.accounts",
        "credits.tenants",
        "credits.holds",
        "credits.dist_transactions",
        "credits.dist_participants",
        "shadow.deployment_events",
        "vault.keys",
        "vault.payments",
        "privacy.subject_keys",
        "privacy.erasures",
    ]
    rows = db.execute(
        """SELECT t AS tbl, (SELECT tgenabled FROM pg_trigger WHERE tgrelid = to_regclass(t)
                                             AND tgname = 'audit_log') AS enabled
                           FROM unnest(%s::text[]) t WHERE to_regclass(t) IS NOT NULL""",
        (tables,),
    ).fetchall()
    assert {r["tbl"] for r in rows} >= {"credits.entries", "credits.accounts", "vault.keys"}
    assert [r for r in rows if r["enabled"] != "A"] == []


def test_superuser_deletes_a_journal_row_in_the_middle(db):
    # Same first and last seq on both sides: the per-account counts disagree,
    # and the per-entry check then names the entry.
    a, _ = history(db)
    db.execute("ALTER TABLE credits.entries DISABLE TRIGGER entries_append_only, DISABLE TRIGGER entries_removal")
    db.execute("DELETE FROM credits.entries WHERE account_id = %s AND seq = 3", (a,))
    db.execute(
        "ALTER TABLE credits.entries ENABLE ALWAYS TRIGGER entries_append_only, ENABLE ALWAYS TRIGGER entries_removal"
    )
    assert call(db, "audit.verify", False, False)["ok"]  # the chain alone cannot tell
    r = verify(db)
    assert (r["ok"], r["stream"], r["seq"], r["problem"]) == (
        False,
        f"ledger/{a}",
        3,
        "audit entry has no journal entry",
    )


def test_a_broken_chain_also_gets_the_per_entry_journal_check(db):
    # The audit entry of seq 2 is gone: the chain check names the gap, and the
    # journal check (which the per-account summary alone would not trigger
    # here: both sides still start at 1 and end at the same seq) names the
    # journal row left without its audit entry.
    a, _ = history(db)
    tamper(db, "DELETE FROM audit.log WHERE stream = %s AND seq = 2", f"ledger/{a}")
    found = {
        row["problem"]
        for row in db.execute(
            "SELECT problem FROM audit.verify_streams(false, true) WHERE stream = %s AND seq = %s", (f"ledger/{a}", 3)
        )
    }
    assert "entries 2 to 2 are missing" in found
    journal = db.execute(
        "SELECT seq, problem FROM audit.verify_streams(false, true) WHERE stream = %s "
        "AND problem LIKE 'journal entry%%'",
        (f"ledger/{a}",),
    ).fetchall()
    assert journal == [{"seq": 2, "problem": "journal entry has no audit entry (written with auditing disabled?)"}]
