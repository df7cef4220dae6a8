"""Rotating the audit signer's key: a key transition is a signed statement of the chain.

The key in force signs "from now on this key signs", the new key countersigns it, and the next checkpoint's
signature covers it. Verifiers pinned to the old key follow the hand-over; verifiers pinned to the new key trust
what came before through the new key's own signatures; a statement signed by a key no transition handed over to,
or a transition signed by a key not in force, is refused and named. Each test makes its own key pairs (the local
cluster's signer key is never rotated here).
"""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest
from click.testing import CliRunner

from helpers import call, raises, setup_accounts
from shieldx import signer
from shieldx.cli import main
from shieldx.cli.audit import export_refusal, signature_problems
from test_audit_superuser import attacker_key, flat, forge_anchor


@pytest.fixture
def key(tmp_path):
    """The signer's key pair, made like cluster.sh init makes it: private half 0600 in a 0700 directory."""
    path = tmp_path / "signer" / "audit_ed25519.key"
    signer.generate_key(path)
    return path


def pub_of(path) -> bytes:
    return signer.load_public_key(str(path) + ".pub")


def run_signer(db, path, tmp_path):
    return signer.Signer(path, state_path=tmp_path / "signer.state", retention_min_days=0).run(db)


def checkpoint(db, path, tmp_path) -> int:
    cid = call(db, "audit.checkpoint")["checkpoint_id"]
    assert run_signer(db, path, tmp_path).checkpoints == [cid]
    return cid


def export(db):
    return db.execute("SELECT audit.export_checkpoint() AS d").fetchone()["d"]


def rotate(dsn, path, *args):
    r = CliRunner().invoke(main, ["audit", "signer", "rotate", "--key", str(path), "--url", dsn, *args])
    assert r.exit_code == 0, r.output
    return r


def cli_verify(dsn, pub, *args):
    return CliRunner().invoke(main, ["audit", "verify", "--url", dsn, "--pubkey", pub.hex(), *args])


def exported(db, pub):
    return call(db, "audit.verify_export", json.dumps(export(db)), pub)


def rotated_history(db, dsn, key, tmp_path):
    """Activity signed by the first key, a rotation, more activity signed by the second."""
    a, _b = setup_accounts(db)
    call(db, "credits.consume", "acme", a, 1, "c1")
    first = checkpoint(db, key, tmp_path)
    old = pub_of(key)
    doc1 = export(db)
    rotate(dsn, key)
    new = pub_of(key)
    call(db, "credits.consume", "acme", a, 1, "c2")
    second = checkpoint(db, key, tmp_path)
    return old, new, doc1, first, second


def test_after_a_rotation_both_the_old_and_the_new_pin_verify(db, dsn, key, tmp_path):
    old_private = key.read_bytes()
    old, new, doc1, first, second = rotated_history(db, dsn, key, tmp_path)
    assert old != new
    # The new private key took the old one's path, with the same permissions; the old private key is gone.
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600 and stat.S_IMODE(os.stat(key.parent).st_mode) == 0o700
    assert os.stat(key).st_uid == os.getuid() and key.read_bytes() != old_private
    assert signer.Signer(key).public_key == new and not (key.parent / (key.name + ".next")).exists()
    t = db.execute("SELECT * FROM audit.key_transitions").fetchone()
    assert (t["from_key_id"], t["to_key_id"], t["after_checkpoint"]) == (signer.key_id(old), signer.key_id(new), first)
    s = db.execute("SELECT key_id FROM audit.checkpoint_signatures WHERE checkpoint_id = %s", (second,)).fetchone()
    assert s["key_id"] == signer.key_id(new)
    # The database's own view, the SQL verifier with either pin, the CLI with either pin.
    assert call(db, "audit.verify", False, True)["ok"]
    for pin in (old, new):
        assert exported(db, pin)["ok"], pin.hex()
        assert call(db, "audit.verify_export", json.dumps(doc1), pin)["ok"], pin.hex()
        r = cli_verify(dsn, pin)
        assert r.exit_code == 0, r.output
    # Offline, the export carries the hand-over: the old pin follows it.
    doc2 = export(db)
    assert [x["to_public_key"] for x in doc2["transitions"]] == [new.hex()]
    assert export_refusal(doc2, old) is None and export_refusal(doc2, new) is None
    # Running the rotation's second half again changes nothing (the database has the transition).
    assert (
        call(db, "audit.rotate_signing_key", old, new, None, t["sig"], t["new_sig"])["rotate_signing_key"]
        == (t["transition_id"])
    )


def test_exports_chain_across_a_rotation(db, dsn, key, tmp_path):
    old, new, doc1, _first, second = rotated_history(db, dsn, key, tmp_path)
    (tmp_path / "cp1.json").write_text(json.dumps(doc1))
    for pin in (old, new):
        r = CliRunner().invoke(
            main,
            [
                "audit",
                "checkpoint",
                "export",
                "--url",
                dsn,
                "--previous",
                str(tmp_path / "cp1.json"),
                "-o",
                str(tmp_path / "cp2.json"),
            ],
            env={"SHIELDX_AUDIT_PUBKEY": pin.hex()},
        )
        assert r.exit_code == 0, r.output
        doc2 = json.loads((tmp_path / "cp2.json").read_text())
        assert doc2["checkpoint_id"] == second and doc2["signature"]["key_id"] == signer.key_id(new)
        r = cli_verify(dsn, pin, "--against", str(tmp_path / "cp2.json"))
        assert r.exit_code == 0 and "matches" in r.output, r.output
    # An export stripped of its transitions, or with the new key swapped for another, is refused offline.
    stripped = dict(doc2, transitions=[])
    assert "an unannounced key" in export_refusal(stripped, old)
    _, mallory = attacker_key()
    swapped = dict(doc2, transitions=[dict(doc2["transitions"][0], to_public_key=mallory.hex())])
    assert "not its key ids" in export_refusal(swapped, old)
    swapped["transitions"][0]["to_key_id"] = signer.key_id(mallory)
    assert "does not verify" in export_refusal(swapped, old)
    # The database must still hold the exported transition.
    db.execute("ALTER TABLE audit.key_transitions DISABLE TRIGGER append_only")
    db.execute("UPDATE audit.key_transitions SET new_sig = %s", (bytes(64),))
    db.execute("ALTER TABLE audit.key_transitions ENABLE ALWAYS TRIGGER append_only")
    x = call(db, "audit.verify_export", json.dumps(doc2), old)  # the hand-over no longer verifies: K2 is not trusted
    assert (x["ok"], x["stream"]) == (False, f"checkpoint/{second}") and "nor by a key it handed over to" in x[
        "problem"
    ]
    x = call(db, "audit.verify_export", json.dumps(doc2), new)  # its own signature, but the chain before is cut off
    assert not x["ok"] and x["broken_streams"] >= 2, x
    problems = {p["stream"]: p["problem"] for p in db.execute("SELECT * FROM audit._signature_problems(%s)", (new,))}
    assert "does not vouch for" in problems["checkpoint/1"] and "do not chain" in problems[f"checkpoint/{second}"]


def test_a_checkpoint_signed_by_an_unannounced_key_is_refused(db, dsn, key, tmp_path):
    old, new, _doc1, _first, _second = rotated_history(db, dsn, key, tmp_path)
    mallory_key, mallory = attacker_key()
    kid = call(db, "audit.register_signing_key", mallory)["register_signing_key"]
    cid = call(db, "audit.checkpoint")["checkpoint_id"]
    c = db.execute(
        f"SELECT {signer.CHECKPOINT_FIELDS} FROM audit.checkpoints c LEFT JOIN audit.checkpoint_signatures s "
        "USING (checkpoint_id) WHERE checkpoint_id = %s",
        (cid,),
    ).fetchone()
    prev = db.execute("SELECT audit._prev_signed(%s) AS p", (cid,)).fetchone()["p"]
    sig = mallory_key.sign(signer.checkpoint_statement(c, bytes(prev)))
    with raises("SX208") as refused:  # the database takes only the key in force
        call(db, "audit.sign_checkpoint", cid, kid, sig)
    assert "not by the key in force" in str(refused.value)
    # A superuser stores it anyway.
    db.execute(
        "INSERT INTO audit.checkpoint_signatures (checkpoint_id, key_id, prev_signed, sig) VALUES (%s, %s, %s, %s)",
        (cid, kid, prev, sig),
    )
    problem = (
        f"checkpoint signed by key {kid}, not by the key in force {signer.key_id(new)}: an unannounced key "
        "(no key transition hands over to it)"
    )
    v = call(db, "audit.verify", False, True)
    assert (v["ok"], v["stream"], v["seq"], v["problem"]) == (False, f"checkpoint/{cid}", cid, problem)
    for pin in (old, new):
        r = cli_verify(dsn, pin)
        assert r.exit_code == 1 and f"stream checkpoint/{cid} seq {cid}: {problem}" in flat(r.output), r.output
        x = exported(db, pin)
        assert not x["ok"] and "not by the pinned key" in x["problem"], x
    # The signer will not go on from it.
    call(db, "audit.checkpoint")
    with pytest.raises(signer.Refused) as refused:
        run_signer(db, key, tmp_path)
    assert "not one this signer signed" in refused.value.problem


def test_a_transition_signed_by_a_key_not_trusted_is_refused(db, dsn, key, tmp_path):
    old, new, _doc1, _first, second = rotated_history(db, dsn, key, tmp_path)
    mallory_key, mallory = attacker_key()
    trent_key, trent = attacker_key()
    call(db, "audit.register_signing_key", mallory)
    head = db.execute("SELECT audit._prev_signed(9223372036854775807) AS p").fetchone()["p"]
    statement = signer.transition_statement(mallory, trent, None, second, bytes(head))
    sigs = (mallory_key.sign(statement), trent_key.sign(statement))
    with raises("SX208") as refused:  # only the key in force can hand over
        call(db, "audit.rotate_signing_key", mallory, trent, None, *sigs)
    assert "not the key in force" in str(refused.value)
    # A superuser stores the forged hand-over, then a checkpoint signed by the key it names.
    call(db, "audit.register_signing_key", trent)
    tid = db.execute(
        """INSERT INTO audit.key_transitions (after_checkpoint, from_key_id, to_key_id, prev_signed, sig, new_sig)
           VALUES (%s, %s, %s, %s, %s, %s) RETURNING transition_id""",
        (second, signer.key_id(mallory), signer.key_id(trent), head, *sigs),
    ).fetchone()["transition_id"]
    cid = call(db, "audit.checkpoint")["checkpoint_id"]
    c = db.execute(
        f"SELECT {signer.CHECKPOINT_FIELDS} FROM audit.checkpoints c LEFT JOIN audit.checkpoint_signatures s "
        "USING (checkpoint_id) WHERE checkpoint_id = %s",
        (cid,),
    ).fetchone()
    prev = db.execute("SELECT audit._prev_signed(%s) AS p", (cid,)).fetchone()["p"]
    db.execute(
        "INSERT INTO audit.checkpoint_signatures (checkpoint_id, key_id, prev_signed, sig) VALUES (%s, %s, %s, %s)",
        (cid, signer.key_id(trent), prev, trent_key.sign(signer.checkpoint_statement(c, bytes(prev)))),
    )
    problem = (
        f"key transition signed by key {signer.key_id(mallory)}, not by the key in force {signer.key_id(new)}: "
        "a key not trusted"
    )
    v = call(db, "audit.verify", False, True)
    assert (v["ok"], v["stream"], v["problem"]) == (False, f"key-transition/{tid}", problem), v
    for pin in (old, new):
        r = cli_verify(dsn, pin)  # the CLI checks every signature itself, and names the first problem
        assert r.exit_code == 1, r.output
        assert f"checkpoint signed by key {signer.key_id(trent)}, which the pinned key" in flat(r.output)
        found = {(p["stream"], p["problem"]) for p in signature_problems(db, pin)}
        assert (f"key-transition/{tid}", problem) in found, found
    # Pinned to the key the forgery hands over to: nothing is vouched for.
    r = cli_verify(dsn, trent)
    assert r.exit_code == 1 and "does not vouch for: an unannounced key" in flat(r.output), r.output


def test_a_retired_key_can_no_longer_consent_to_retention_and_a_revoked_one_not_after_its_compromise(
    db, dsn, key, tmp_path
):
    a, _ = setup_accounts(db)
    for i in range(3):
        call(db, "credits.consume", "acme", a, 1, f"c{i}")
    first = checkpoint(db, key, tmp_path)
    second = checkpoint(db, key, tmp_path)
    stolen = tmp_path / "stolen.key"
    shutil.copy(key, stolen)  # what a thief of the old key holds
    thief = signer.Signer(stolen)
    old = pub_of(key)
    r = rotate(dsn, key, "--compromised-since", str(first))
    assert "(old key revoked)" in r.output
    new = pub_of(key)
    third = checkpoint(db, key, tmp_path)
    stream = f"ledger/{a}"
    entry = db.execute("SELECT seq, hash FROM audit.log WHERE stream = %s AND seq = 1", (stream,)).fetchone()
    for cid, allowed in ((first, True), (second, False), (third, False)):
        db.execute("ALTER TABLE audit.anchors DISABLE TRIGGER removal, DISABLE TRIGGER append_only")
        db.execute("DELETE FROM audit.anchors WHERE stream = %s", (stream,))
        db.execute("ALTER TABLE audit.anchors ENABLE ALWAYS TRIGGER removal, ENABLE ALWAYS TRIGGER append_only")
        forge_anchor(db, stream, 1, bytes(entry["hash"]), cid, None, None)
        sig = thief.key.sign(signer.anchor_statement(stream, 1, bytes(entry["hash"]), cid))
        if allowed:  # on a checkpoint before the compromise: still the old key's consent
            assert call(db, "audit.sign_anchor", stream, 1, thief.key_id, sig)["sign_anchor"]
            db.execute("ALTER TABLE audit.anchor_signatures DISABLE TRIGGER removal, DISABLE TRIGGER append_only")
            db.execute("DELETE FROM audit.anchor_signatures WHERE stream = %s", (stream,))
            db.execute(
                "ALTER TABLE audit.anchor_signatures ENABLE ALWAYS TRIGGER removal, ENABLE ALWAYS TRIGGER append_only"
            )
        else:
            with raises("SX208"):
                call(db, "audit.sign_anchor", stream, 1, thief.key_id, sig)
    # The thief stores one anyway (after the compromise) and deletes the entry it covers: named.
    db.execute(
        "INSERT INTO audit.anchor_signatures (stream, seq, key_id, sig) VALUES (%s, 1, %s, %s)",
        (stream, thief.key_id, sig),
    )
    with raises("42501"):  # the removal rule does not count it
        db.execute("DELETE FROM audit.log WHERE stream = %s AND seq = 1", (stream,))
    for pin in (None, new):
        rows = db.execute("SELECT * FROM audit._signature_problems(%s)", (pin,)).fetchall()
        assert [(p["stream"], p["seq"]) for p in rows] == [(stream, 2)], rows
        assert rows[0]["problem"] == (
            f"retention anchor signed by key {thief.key_id}, which may no longer sign anchors on checkpoint {third} "
            "(retired or revoked by a key transition)"
        )
    # The revoked key's own verifiers are told to re-pin: anyone with it could forge a hand-over.
    r = cli_verify(dsn, old)
    assert r.exit_code == 1 and f"the pinned key {signer.key_id(old)} was revoked" in flat(r.output), r.output
    assert f"pin {signer.key_id(new)}, obtained out of band" in flat(r.output)
    with raises("SX007"):  # revoked since a checkpoint the old key never signed
        call(db, "audit.rotate_signing_key", new, old, third + 1, bytes(64), bytes(64))


def test_an_interrupted_rotation_is_completed_or_discarded_by_the_next_run(db, dsn, key, tmp_path):
    setup_accounts(db)
    checkpoint(db, key, tmp_path)
    old = signer.Signer(key)
    nxt = key.parent / (key.name + ".next")
    # Interrupted before the database stored it: a `.next` pair nobody knows of is discarded, a new pair made.
    stale = signer.generate_key(nxt)
    rotate(dsn, key)
    rotated = pub_of(key)
    assert rotated not in (stale, old.public_key) and not nxt.exists()
    t = db.execute("SELECT to_key_id FROM audit.key_transitions ORDER BY transition_id DESC LIMIT 1").fetchone()
    assert t["to_key_id"] == signer.key_id(rotated)
    # Interrupted after the database stored it, before the files moved: the next run finishes the hand-over.
    current = signer.Signer(key)
    pending = signer.generate_key(nxt)
    _, head = current.head(db)
    after = db.execute("SELECT max(checkpoint_id) AS m FROM audit.checkpoint_signatures").fetchone()["m"]
    statement = signer.transition_statement(current.public_key, pending, None, after, head)
    new_private = signer.Signer(nxt)
    call(
        db,
        "audit.rotate_signing_key",
        current.public_key,
        pending,
        None,
        current.key.sign(statement),
        new_private.key.sign(statement),
    )
    key.write_bytes(bytes(len(key.read_bytes())))  # and even after the old key file was overwritten
    r = rotate(dsn, key)
    assert signer.key_id(pending) in r.output and pub_of(key) == pending and not nxt.exists()
    assert signer.Signer(key).public_key == pending
    checkpoint(db, key, tmp_path)  # the new key signs
    assert call(db, "audit.verify", False, True)["ok"]
    for pin in (old.public_key, pending):
        assert exported(db, pin)["ok"]
