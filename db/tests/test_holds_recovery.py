"""Stalled transactions, for real: clients and coordinators that vanish, and native prepared orphans."""

from __future__ import annotations

import time

import psycopg
from psycopg.rows import dict_row

from helpers import call, raises, rows, setup_accounts
from shieldx.cli.prepared import reap


def legs(*triples) -> psycopg.types.json.Jsonb:
    return psycopg.types.json.Jsonb([{"tenant_id": t, "account_id": a, "amount": n} for t, a, n in triples])


def test_client_prepares_and_disappears_funds_return_after_expiry(db, dsn):
    (a,) = setup_accounts(db, n=1, grant=100)
    # A client reserves on its own session and vanishes (its backend terminated).
    client = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
    hold = call(client, "credits.reserve", "acme", a, 70, "stalled", "1 second")["hold_id"]
    pid = client.info.backend_pid
    db.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    client.close()
    assert call(db, "credits.get_account", "acme", a)["available"] == 30
    with raises("SX004"):
        call(db, "credits.reserve", "acme", a, 50, "other")
    time.sleep(1.1)
    # Nothing ran yet, but the hold can no longer be used...
    with raises("SX104"):
        call(db, "credits.commit_hold", "acme", hold)
    # ...and the job gives the funds back and records it on the hold.
    assert call(db, "credits.expire_holds")["amount"] == 70
    acc = call(db, "credits.get_account", "acme", a)
    assert (acc["balance"], acc["held"], acc["available"]) == (100, 0, 100)
    h = db.execute("SELECT status, resolved_at FROM credits.holds WHERE hold_id = %s", (hold,)).fetchone()
    assert h["status"] == "expired" and h["resolved_at"] is not None
    assert call(db, "credits.reserve", "acme", a, 100, "other")["replayed"] is False
    assert rows(db, "credits.reconcile_holds") == [] and rows(db, "credits.reconcile") == []


def test_coordinator_logs_commit_and_dies_recovery_completes(db, dsn):
    a, b = setup_accounts(db, n=2, grant=100)
    (c,) = setup_accounts(db, tenant="beta", n=1, grant=0)
    coord = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
    call(coord, "credits.dist_begin", "dies-1", legs(("acme", a, -40), ("acme", b, -10), ("beta", c, 50)), "1 second")
    assert call(coord, "credits.dist_prepare", "dies-1")["state"] == "prepared"
    assert call(coord, "credits.dist_decide", "dies-1", "commit")["state"] == "committing"
    db.execute("SELECT pg_terminate_backend(%s, 5000)", (coord.info.backend_pid,))  # dies before completing
    coord.close()
    time.sleep(1.2)  # well past the deadline: the logged decision still wins
    assert call(db, "credits.expire_holds")["holds"] == 0  # pinned legs do not expire
    out = rows(db, "credits.dist_recover")
    assert out == [{"xid": "dies-1", "action": "completed commit", "state": "committed"}]
    assert rows(db, "credits.dist_recover") == []  # twice: nothing left to do
    assert call(db, "credits.get_account", "acme", a)["balance"] == 60
    assert call(db, "credits.get_account", "acme", b)["balance"] == 90
    assert call(db, "credits.get_account", "beta", c)["balance"] == 50
    events = [e["event"] for e in call(db, "credits.get_dist_transaction", "dies-1")["events"]]
    assert events[-4:] == ["leg_committed", "leg_committed", "leg_committed", "committed"]
    assert rows(db, "credits.reconcile_holds") == [] and rows(db, "credits.reconcile") == []


def test_coordinator_dies_undecided_presumed_abort(db, dsn):
    a, b = setup_accounts(db, n=2, grant=100)
    coord = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
    call(coord, "credits.dist_begin", "dies-2", legs(("acme", a, -40), ("acme", b, 40)), "1 second")
    call(coord, "credits.dist_prepare", "dies-2")
    coord.close()
    assert rows(db, "credits.dist_recover") == []  # not past its deadline yet: left alone
    time.sleep(1.1)
    assert rows(db, "credits.dist_recover") == [{"xid": "dies-2", "action": "presumed abort", "state": "aborted"}]
    tx = call(db, "credits.get_dist_transaction", "dies-2")
    assert tx["reason"] == "presumed abort: no decision by the deadline"
    assert call(db, "credits.get_account", "acme", a)["available"] == 100
    with raises("SX108"):  # the coordinator comes back and tries to commit
        call(db, "credits.dist_commit", "dies-2")
    assert rows(db, "credits.reconcile_holds") == []


def test_recovery_can_die_midway_and_run_again(db, dsn):
    a, b = setup_accounts(db, n=2, grant=100)
    call(db, "credits.dist_begin", "mid-1", legs(("acme", a, -5), ("acme", b, 5)))
    call(db, "credits.dist_prepare", "mid-1")
    call(db, "credits.dist_decide", "mid-1", "commit")
    # A recovery run that dies after doing its work but before committing it.
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        assert conn.execute("SELECT * FROM credits.dist_recover()").fetchall()[0]["state"] == "committed"
        conn.rollback()
    assert call(db, "credits.get_dist_transaction", "mid-1")["state"] == "committing"
    assert rows(db, "credits.dist_recover")[0]["state"] == "committed"
    assert call(db, "credits.get_account", "acme", b)["balance"] == 105


def test_recovery_skips_a_transaction_its_coordinator_is_driving(db, dsn):
    a, b = setup_accounts(db, n=2, grant=100)
    call(db, "credits.dist_begin", "busy-1", legs(("acme", a, -5), ("acme", b, 5)))
    call(db, "credits.dist_prepare", "busy-1")
    call(db, "credits.dist_decide", "busy-1", "commit")
    with psycopg.connect(dsn, row_factory=dict_row) as coord:
        coord.execute("SELECT * FROM credits.dist_transactions WHERE xid = 'busy-1' FOR UPDATE")
        assert rows(db, "credits.dist_recover") == []  # does not wait, does not double-apply
        coord.execute("SELECT * FROM credits.dist_complete('busy-1')")
        coord.commit()
    assert rows(db, "credits.dist_recover") == []
    assert call(db, "credits.get_account", "acme", b)["balance"] == 105


def test_native_prepared_transaction_left_behind_is_reaped(db, dsn, connect):
    (a,) = setup_accounts(db, n=1, grant=100)
    gid = f"orphan-{time.time_ns()}"
    app = psycopg.connect(dsn)
    app.tpc_begin(app.xid(1, gid, "shieldx-test"))
    app.execute("SELECT * FROM credits.consume('acme', %s, 10, 'in-2pc')", (a,))
    app.tpc_prepare()
    app.close()  # the application disappears; the prepared transaction stays
    xid_gid = db.execute("SELECT gid FROM pg_prepared_xacts WHERE database = current_database()").fetchone()["gid"]
    listed = rows(db, "credits.prepared_transactions", "0 seconds")
    assert [r["gid"] for r in listed] == [xid_gid] and listed[0]["overdue"]
    assert rows(db, "credits.prepared_transactions")[0]["overdue"] is False  # default age: 10 minutes

    # Its row lock blocks everyone else on that account.
    other = connect()
    other.execute("SET lock_timeout = '200ms'")
    with raises("55P03"):
        call(other, "credits.consume", "acme", a, 1, "blocked")

    # The pg_cron job reports it once; the reaper rolls it back and records it.
    assert db.execute("SELECT credits.report_prepared('0 seconds') AS n").fetchone()["n"] == 1
    assert db.execute("SELECT credits.report_prepared('0 seconds') AS n").fetchone()["n"] == 0
    assert reap(dsn, "1 hour") == []  # not old enough by this measure
    done = reap(dsn, "0 seconds")
    assert [(d["gid"], d["action"]) for d in done] == [(xid_gid, "rolled_back")]
    assert rows(db, "credits.prepared_transactions") == []
    log = db.execute("SELECT gid, action FROM credits.prepared_reaper_log ORDER BY log_id").fetchall()
    assert [(r["gid"], r["action"]) for r in log] == [(xid_gid, "overdue"), (xid_gid, "rolled_back")]
    # Its consume never happened, and the account is free again.
    assert call(other, "credits.consume", "acme", a, 1, "unblocked")["balance_after"] == 99
    assert rows(db, "credits.reconcile") == []


def test_reaper_records_a_prepared_transaction_finished_by_its_owner_meanwhile(db, dsn, monkeypatch):
    gid = f"racing-{time.time_ns()}"
    owner = psycopg.connect(dsn)
    owner.tpc_begin(owner.xid(1, gid, "t"))
    owner.execute("SELECT 1")
    owner.tpc_prepare()
    xid_gid = db.execute("SELECT gid FROM pg_prepared_xacts WHERE database = current_database()").fetchone()["gid"]
    real_connect = psycopg.connect

    def connect_where_owner_wins(*args, **kwargs):
        conn = real_connect(*args, **kwargs)
        execute = conn.execute

        def racing_execute(query, params=None, **kw):
            if not isinstance(query, str) and "ROLLBACK PREPARED" in query.as_string(conn):
                owner.tpc_commit()  # the owner finishes it between the listing and the rollback
            return execute(query, params, **kw)

        conn.execute = racing_execute
        return conn

    monkeypatch.setattr("shieldx.cli.prepared.psycopg.connect", connect_where_owner_wins)
    done = reap(dsn, "0 seconds")
    assert [(d["gid"], d["action"]) for d in done] == [(xid_gid, "gone")]
    owner.close()
    log = db.execute("SELECT action FROM credits.prepared_reaper_log ORDER BY log_id").fetchall()
    assert [r["action"] for r in log] == ["overdue", "gone"]
