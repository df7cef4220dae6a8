"""An idempotency key names one call of a tenant, whatever the operation.

Every keyed call of a tenant claims its key in credits._idem_key_claim: a key
used by one operation and then by another is SX005 (409), never a 500, and the
second call changes nothing, in whichever table the first one wrote.
"""

from __future__ import annotations

import itertools

import pytest

from helpers import call, raises, run_threads, setup_accounts

# Each keyed operation of a tenant, as (name, call(conn, key, a1, a2)).
OPS = {
    "account": lambda c, k, a1, a2: call(c, "credits.create_account", "acme", f"acc-{k}", k),
    "grant": lambda c, k, a1, a2: call(c, "credits.grant_credits", "acme", a1, 5, k),
    "consume": lambda c, k, a1, a2: call(c, "credits.consume", "acme", a1, 5, k),
    "transfer": lambda c, k, a1, a2: call(c, "credits.transfer", "acme", a1, a2, 5, k),
    "hold": lambda c, k, a1, a2: call(c, "credits.reserve", "acme", a1, 5, k),
    "key": lambda c, k, a1, a2: call(c, "auth.create_key", "acme", f"key-{k}", ["consumer"], k),
    # A card top-up is a grant paid by card: it claims its key as a grant, whose replay check refuses it.
    "card": lambda c, k, a1, a2: call(c, "vault.top_up", "acme", a1, 5, k, "4111111111111111", "12/30"),
}


def state(db) -> tuple:
    """Every keyed table of the tenant."""
    return tuple(
        tuple(tuple(r.values()) for r in db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall())
        for t in ("credits.accounts", "credits.entries", "credits.holds", "auth.keys", "vault.payments")
    )


@pytest.mark.parametrize(("first", "second"), list(itertools.permutations(OPS, 2)))
def test_a_key_reused_by_another_operation_is_a_conflict(db, first, second):
    a1, a2 = setup_accounts(db)
    OPS[first](db, "k-1", a1, a2)
    before = state(db)
    with raises("SX005"):
        OPS[second](db, "k-1", a1, a2)
    assert state(db) == before
    # The first operation still replays.
    assert OPS[first](db, "k-1", a1, a2)["replayed"] is True


def test_concurrent_operations_with_one_key_apply_one(connect, db):
    a1, a2 = setup_accounts(db)
    names = list(OPS)
    conns = [connect() for _ in names]
    outcomes: dict[str, str] = {}

    def run(i: int) -> None:
        try:
            OPS[names[i]](conns[i], "race", a1, a2)
            outcomes[names[i]] = "ok"
        except Exception as exc:
            outcomes[names[i]] = getattr(exc, "sqlstate", repr(exc))

    assert run_threads(len(names), run) == []
    assert sorted(outcomes.values()) == ["SX005"] * (len(names) - 1) + ["ok"], outcomes


def test_dist_keys_are_reserved_for_every_keyed_call(db):
    a1, a2 = setup_accounts(db)
    for name, op in OPS.items():
        with raises("SX007"):
            op(db, f"dist:1:{name}", a1, a2)


def test_keys_stored_before_the_registry_are_backfilled(dsn, db):
    """A database migrated before credits.idem_keys existed: migration 0721 adds the keys its accounts, holds and API
    keys already hold, so a consume with one of them is still refused."""
    from shieldx import schema

    a1, a2 = setup_accounts(db)
    OPS["hold"](db, "old-hold", a1, a2)
    OPS["key"](db, "old-key", a1, a2)
    since = [m for m in schema.migration_ids() if m >= "0720_idem_keys"]  # 0720, 0721 and any later ones
    assert since[:2] == ["0720_idem_keys", "0721_idem_keys_backfill"]
    assert schema.rollback(dsn, count=len(since)) == since[::-1]
    assert db.execute("SELECT to_regclass('credits.idem_keys') AS t").fetchone()["t"] is None
    assert schema.migrate(dsn) == since
    kept = db.execute("SELECT idem_key, op FROM credits.idem_keys WHERE tenant_id = 'acme' ORDER BY 1").fetchall()
    assert [(k["idem_key"], k["op"]) for k in kept] == [
        ("old-hold", "hold"),
        ("old-key", "key"),
        ("open-acme-0", "account"),
        ("open-acme-1", "account"),
    ]
    before = state(db)
    for key in ("old-hold", "old-key", "open-acme-0"):
        with raises("SX005"):
            OPS["consume"](db, key, a1, a2)
    assert state(db) == before
