"""The vault's keyring module (db/functions/vault/keyring.py) in plain Python:
the same text PL/Python runs, on a key directory of the test's own."""

from __future__ import annotations

import importlib.util
import os
import stat

import pytest

from shieldx.paths import FUNCTIONS_DIR

spec = importlib.util.spec_from_file_location("vault_keyring", FUNCTIONS_DIR / "vault" / "keyring.py")
assert spec and spec.loader
K = importlib.util.module_from_spec(spec)
spec.loader.exec_module(K)


class NamedError(Exception):
    """What plpy.error raises in PostgreSQL, with the same arguments."""

    def __init__(self, message, detail=None, hint=None, sqlstate=None):
        super().__init__(message)
        self.detail, self.hint, self.sqlstate = detail, hint, sqlstate


def raise_named(message, detail=None, hint=None, sqlstate=None):
    raise NamedError(message, detail, hint, sqlstate)


@pytest.fixture
def ring(tmp_path):
    return K.Keyring(lambda: str(tmp_path), raise_named)


def test_a_new_key_becomes_current_and_is_private(ring, tmp_path):
    first = ring.new_key("card")
    second = ring.new_key("card")
    assert first != second
    assert ring.current("card") == second
    path = tmp_path / "card" / f"{second}.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "card").stat().st_mode) == 0o700
    assert len(bytes.fromhex(path.read_text())) == K.KEY_BYTES


def test_ciphertexts_round_trip_name_their_key_and_use_fresh_nonces(ring):
    key_id = ring.new_key("card")
    a = ring.encrypt("card", b"4111111111111111", b"row 1")
    b = ring.encrypt("card", b"4111111111111111", b"row 1")
    assert a != b
    assert a[0] == K.FORMAT
    assert K.key_id_of(a) == ring.key_id_of(a) == key_id
    assert ring.decrypt("card", a, b"row 1") == b"4111111111111111"


def test_a_ciphertext_moved_to_another_row_or_altered_is_refused(ring):
    ring.new_key("card")
    blob = ring.encrypt("card", b"secret", b"row 1")
    with pytest.raises(NamedError) as moved:
        ring.decrypt("card", blob, b"row 2")
    assert moved.value.sqlstate == K.DECRYPTION_FAILED
    altered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(NamedError):
        ring.decrypt("card", altered, b"row 1")
    with pytest.raises(NamedError) as unknown:
        ring.decrypt("card", b"\x02" + blob[1:], b"row 1")
    assert str(unknown.value) == "unknown ciphertext format"
    assert K.key_id_of(b"\x02abc") is None


def test_old_keys_stay_readable_until_destroyed(ring):
    old = ring.new_key("card")
    blob = ring.encrypt("card", b"x", b"aad")
    ring.new_key("card")
    assert ring.decrypt("card", blob, b"aad") == b"x"
    ring.destroy("card", old)
    ring.destroy("card", old)  # idempotent
    with pytest.raises(NamedError) as gone:
        ring.decrypt("card", blob, b"aad")
    assert gone.value.sqlstate == K.KEY_UNAVAILABLE
    assert f'"key_id": "{old}"' in gone.value.detail


def test_missing_or_short_keys_are_named_errors(ring, tmp_path):
    with pytest.raises(NamedError) as none:
        ring.current("audit")
    assert none.value.sqlstate == K.KEY_UNAVAILABLE
    (tmp_path / "audit").mkdir()
    (tmp_path / "audit" / "kshort.key").write_text("00" * 16)
    with pytest.raises(NamedError, match="not 256 bits"):
        ring.key("audit", "kshort")


def test_a_raw_key_encrypts_without_a_key_file(ring):
    raw = os.urandom(K.KEY_BYTES)
    blob = ring.encrypt(None, b"subject data", b"aad", key_id="", raw=raw)
    assert K.key_id_of(blob) == ""
    assert ring.decrypt(None, blob, b"aad", raw=raw) == b"subject data"


def test_hmac_is_sha256_under_the_named_key(ring):
    import hashlib
    import hmac

    key_id = ring.new_key("audit")
    assert ring.hmac("audit", key_id, b"m") == hmac.new(ring.key("audit", key_id), b"m", hashlib.sha256).digest()


def test_the_key_dir_comes_from_the_database_setting_else_the_config_files(tmp_path):
    assert K.key_dir(lambda sql: [{"cfg": "shieldx.key_dir=/srv/keys"}]) == "/srv/keys"
    (tmp_path / "postgresql.conf").write_text("shieldx.key_dir = '/a'  # comment\n")
    (tmp_path / "postgresql.auto.conf").write_text("shieldx.key_dir = '/b'\n")
    assert K.key_dir_from_config(str(tmp_path)) == "/b"  # ALTER SYSTEM's file wins
    (tmp_path / "postgresql.auto.conf").write_text("# shieldx.key_dir = '/c'\n")
    assert K.key_dir_from_config(str(tmp_path)) == "/a"
    assert K.key_dir_from_config(str(tmp_path / "missing")) is None


def test_an_epoch_key_is_hkdf_sha256_of_the_previous_one_bound_to_its_id(ring, tmp_path):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    first = ring.new_key("subject")
    nxt = ring.next_epoch(first)
    assert nxt.startswith(K.RATCHET_PREFIX) and ring.current_file("subject") == nxt
    old, new = ring.key("subject", first), ring.key("subject", nxt)
    expected = HKDF(hashes.SHA256(), 32, None, b"shieldx subject epoch " + nxt.encode()).derive(old)
    assert new == expected and new != old
    assert K.next_epoch_key(old, nxt + "x") != new  # the id is part of the derivation
    assert (tmp_path / "subject" / f"{first}.key").exists()  # the caller destroys the old file, once committed
    assert stat.S_IMODE((tmp_path / "subject" / f"{nxt}.key").stat().st_mode) == 0o600


def _node(tmp_path, name, chain):
    """Another node's keyring: its own directory, the same (replicated) epochs."""
    return K.Keyring(lambda: str(tmp_path / name), raise_named, lambda purpose: None, lambda: chain)


def test_a_node_holding_an_older_epoch_key_derives_forward_and_destroys_it(tmp_path):
    chain: list[tuple[str | None, str]] = []
    primary = _node(tmp_path, "primary", chain)
    k0 = primary.new_key("subject")
    (tmp_path / "standby" / "subject").mkdir(parents=True)
    (tmp_path / "standby" / "subject" / f"{k0}.key").write_text(
        (tmp_path / "primary" / "subject" / f"{k0}.key").read_text()
    )
    k1 = primary.next_epoch(k0)
    chain.append((k0, k1))
    k2 = primary.next_epoch(k1)
    chain.append((k1, k2))
    standby = _node(tmp_path, "standby", chain)
    assert standby.files("subject") == [k0]
    done = standby.ratchet()
    assert done == {"key_id": k2, "derived": [k1, k2], "destroyed": [k0]}
    assert standby.files("subject") == [k2] and standby.current_file("subject") == k2
    assert standby.key("subject", k2) == primary.key("subject", k2)
    assert standby.ratchet() == {"key_id": k2, "derived": [], "destroyed": []}  # idempotent
    # A key of a closed epoch is gone for good: the node cannot compute it back.
    with pytest.raises(NamedError) as gone:
        standby.key("subject", k0)
    assert gone.value.sqlstate == K.KEY_UNAVAILABLE
    # Lazily: a node asked for a key it lacks ratchets first.
    (tmp_path / "lazy" / "subject").mkdir(parents=True)
    (tmp_path / "lazy" / "subject" / f"{k1}.key").write_text(
        (tmp_path / "primary" / "subject" / f"{k1}.key").read_text()
    )
    lazy = _node(tmp_path, "lazy", chain)
    assert lazy.key("subject", k2) == primary.key("subject", k2)
    assert lazy.files("subject") == [k2]


def test_the_ratchet_refuses_what_it_cannot_derive(tmp_path):
    chain: list[tuple[str | None, str]] = []
    primary = _node(tmp_path, "primary", chain)
    k0 = primary.new_key("subject")
    k1 = primary.new_key("subject")  # made at random (before the ratchet): not derivable
    chain.append((k0, k1))
    (tmp_path / "behind" / "subject").mkdir(parents=True)
    (tmp_path / "behind" / "subject" / f"{k0}.key").write_text("00" * 32)
    with pytest.raises(NamedError, match="made at random") as random_gap:
        _node(tmp_path, "behind", chain).ratchet()
    assert random_gap.value.sqlstate == K.KEY_UNAVAILABLE
    assert (tmp_path / "behind" / "subject" / f"{k0}.key").exists()  # nothing destroyed on a refusal
    with pytest.raises(NamedError, match="no subject key of any epoch") as empty:
        _node(tmp_path, "empty", chain).ratchet()
    assert empty.value.sqlstate == K.KEY_UNAVAILABLE


def test_the_database_record_names_the_current_key_over_the_current_file(tmp_path):
    recorded = {"payment": None}
    ring = K.Keyring(lambda: str(tmp_path), raise_named, recorded.get)
    first = ring.new_key("payment")
    assert ring.current("payment") == first  # no record yet: CURRENT decides
    second = ring.new_key("payment")
    recorded["payment"] = first  # e.g. a node whose CURRENT was never rolled back or forward
    assert ring.current("payment") == first and ring.current_file("payment") == second
    assert ring.installed("payment", second) and not ring.installed("payment", "kmissing")


def test_key_files_are_written_whole_and_a_concurrent_ratchet_meets_the_same_file(ring, tmp_path):
    raw = os.urandom(K.KEY_BYTES)
    ring._write("subject", "kr1", raw)
    ring._write("subject", "kr1", raw, exist_ok=True)  # another session derived it first: fine
    with pytest.raises(FileExistsError):
        ring._write("subject", "kr1", os.urandom(K.KEY_BYTES))  # a new key never replaces one
    assert ring.key("subject", "kr1") == raw
    assert sorted(p.name for p in (tmp_path / "subject").iterdir()) == ["kr1.key"]  # no temporary file left
    ring.set_current("subject", "kr1")
    assert sorted(p.name for p in (tmp_path / "subject").iterdir()) == ["CURRENT", "kr1.key"]
