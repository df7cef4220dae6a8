"""The audit signer: Ed25519 signatures made outside PostgreSQL.

The private key lives in a file the database server's OS user cannot read
(root-owned, mode 0600, in a directory of mode 0700), so no SQL session, not
even a superuser's with pg_read_file() or PL/Python, can sign. The signer
(`shieldx audit sign`) does not sign what the database asks blindly:

* a checkpoint only after recomputing its Merkle root from its heads and
  walking every chain, entry by entry (hash and link recomputed here), from
  the previous signed checkpoint's head (or the chain's start) to the new
  head; and only if the database still holds, as signed, the last checkpoint
  this signer signed for it (its state file), so a rollback is refused;
* a retention anchor only if its entry is on a chain of a signed checkpoint
  and older than the signer's minimum age.

Key rotation (`rotate_key`, `shieldx audit signer rotate`): the key in force
signs a key transition naming the new public key, the new key countersigns
it, and it takes its place in the chain of signed statements; the new key
signs every checkpoint after it. The old private key is destroyed (its file
overwritten, then replaced by the new key's). `trust` and `chain_problems`
are the verifier's side of it: which keys a pinned key vouches for, and every
statement of the chain not chained, not signed by the key in force, or
signed by a key the pin does not vouch for.

The statement formats are those of db/functions/audit/signing.sql; the
verifier side (`verify_statement`, `checkpoint_statement`, `read_statements`,
`trust`, `chain_problems`) is shared with `shieldx audit verify`.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ZERO32 = bytes(32)


def f(value: str | None) -> str:
    """audit._f: '<length in characters>:<text>', NULL as '-'."""
    return "-" if value is None else f"{len(value)}:{value}"


def key_id(public_key: bytes) -> str:
    return "ed25519:" + hashlib.sha256(public_key).hexdigest()[:16]


def genesis(stream: str) -> bytes:
    return hashlib.sha256(("SXA1 genesis " + stream).encode()).digest()


def entry_hash(e: dict[str, Any]) -> bytes:
    """audit._hash_v1 of a row of audit.log (logged_at as timestamptz_send bytes, `at`)."""
    text = "SXA1" + f(e["stream"]) + f(e["source"]) + f(e["op"]) + f(e["actor"]) + f(e["app"]) + f(e["payload"])
    return hashlib.sha256(
        bytes(e["prev_hash"]) + struct.pack(">qq", e["seq"], e["txid"]) + bytes(e["at"]) + text.encode()
    ).digest()


def merkle_root(leaves: list[bytes]) -> bytes:
    level = list(leaves)
    if not level:
        return hashlib.sha256(b"").digest()
    while len(level) > 1:
        nxt = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def heads_root(heads: dict[str, tuple[int, bytes]]) -> bytes:
    """audit._merkle_root over audit._leaf of every head, in C collation order."""
    return merkle_root(
        [
            hashlib.sha256(b"\x00" + ("SXL1" + f(s) + f(str(seq))).encode() + h).digest()
            for s, (seq, h) in sorted(heads.items(), key=lambda kv: kv[0].encode())
        ]
    )


def checkpoint_statement(c: dict[str, Any], prev_signed: bytes) -> bytes:
    """'SXE1' || audit._checkpoint_msg(c) || _f(hex prev_signed)."""
    prev_sig = c.get("prev_sig")
    msg = (
        "SXC1"
        + f(str(c["checkpoint_id"]))
        + f(str(c["created_at_us"]))
        + f(c["reason"])
        + f(str(c["streams"]))
        + f(str(c["entries"]))
        + f(_hex(c["root"]))
        + f(_hex(prev_sig) if prev_sig not in (None, "") else None)
        + f(c["key_id"])
    )
    return b"SXE1" + msg.encode() + f(prev_signed.hex()).encode()


def anchor_statement(stream: str, seq: int, hash_: bytes, checkpoint_id: int) -> bytes:
    return b"SXE2" + ("SXN1" + f(stream) + f(str(seq)) + f(hash_.hex()) + f(str(checkpoint_id))).encode()


def transition_statement(
    from_public: bytes, to_public: bytes, compromised_since: int | None, after_checkpoint: int, prev_signed: bytes
) -> bytes:
    """audit._transition_statement: the key in force hands over to to_public after checkpoint after_checkpoint."""
    return (
        "SXE3SXK1"
        + f(from_public.hex())
        + f(to_public.hex())
        + f(None if compromised_since is None else str(compromised_since))
        + f(str(after_checkpoint))
        + f(prev_signed.hex())
    ).encode()


@dataclass
class Statement:
    """One signed statement of the chain: a checkpoint signature or a key transition."""

    kind: str  # "checkpoint" or "transition"
    ident: int  # the checkpoint id or the transition id
    after_checkpoint: int  # its place: a checkpoint at its id, a transition right after this checkpoint
    key_id: str  # the key that signed it (a transition: the old key)
    prev_signed: bytes
    message: bytes
    sig: bytes
    new_sig: bytes = b""  # a transition: the new key's countersignature
    to_key_id: str | None = None
    from_public: bytes | None = None
    to_public: bytes | None = None
    compromised_since: int | None = None

    @property
    def position(self) -> tuple[int, int, int]:
        return (self.after_checkpoint, 0 if self.kind == "checkpoint" else 1, self.ident)

    @property
    def label(self) -> str:
        return f"checkpoint/{self.ident}" if self.kind == "checkpoint" else f"key-transition/{self.ident}"

    def chain_hash(self) -> bytes:
        """What the next statement names as prev_signed."""
        return hashlib.sha256(self.message + self.sig + self.new_sig).digest()


CHECKPOINT_FIELDS = """c.checkpoint_id, audit._micros(c.created_at) AS created_at_us, c.reason, c.streams, c.entries,
                       c.root, c.prev_sig, c.key_id, s.key_id AS signer_key, s.prev_signed, s.sig AS signature"""


def read_statements(conn: Any, from_checkpoint: int = 0) -> list[Statement]:
    """The chain of signed statements from the database, in chain order (from a checkpoint id on)."""
    out = [
        Statement(
            "checkpoint",
            c["checkpoint_id"],
            c["checkpoint_id"],
            c["signer_key"],
            bytes(c["prev_signed"]),
            checkpoint_statement(c, bytes(c["prev_signed"])),
            bytes(c["signature"]),
        )
        for c in conn.execute(
            f"""SELECT {CHECKPOINT_FIELDS}
                  FROM audit.checkpoint_signatures s JOIN audit.checkpoints c USING (checkpoint_id)
                 WHERE checkpoint_id >= %s""",
            (from_checkpoint,),
        )
    ]
    for t in conn.execute(
        """SELECT t.transition_id, t.after_checkpoint, t.from_key_id, t.to_key_id, t.compromised_since,
                  t.prev_signed, t.sig, t.new_sig, f.public_key AS from_public, n.public_key AS to_public
             FROM audit.key_transitions t
             JOIN audit.signing_keys f ON f.key_id = t.from_key_id
             JOIN audit.signing_keys n ON n.key_id = t.to_key_id
            WHERE t.after_checkpoint >= %s""",
        (from_checkpoint,),
    ):
        out.append(transition_from_row(t))
    return sorted(out, key=lambda s: s.position)


def transition_from_row(t: dict[str, Any]) -> Statement:
    """A key transition, from a database row or an export's `transitions` item (hex strings)."""

    def raw(v: Any) -> bytes:
        return bytes.fromhex(v) if isinstance(v, str) else bytes(v)

    frm, to, prev = (
        raw(t.get("from_public") or t["from_public_key"]),
        raw(t.get("to_public") or t["to_public_key"]),
        raw(t["prev_signed"]),
    )
    return Statement(
        "transition",
        t["transition_id"],
        t["after_checkpoint"],
        t["from_key_id"],
        prev,
        transition_statement(frm, to, t["compromised_since"], t["after_checkpoint"], prev),
        raw(t["sig"]),
        raw(t["new_sig"]),
        t["to_key_id"],
        frm,
        to,
        t["compromised_since"],
    )


# key id -> (public key, the last checkpoint on which it may sign a retention anchor; None: any)
Keys = dict[str, tuple[bytes, int | None]]


def trust(statements: list[Statement], pin: bytes) -> Keys:
    """The keys a verifier pinned to `pin` trusts: the succession of keys the transitions make (each signed by the
    key in force and countersigned by the next; it stops at the first that is not), if the pin is in it; the keys
    after the pin because a trusted key handed over to them, those before because the pin's own signature covers
    the chain before it. Only the pin itself if it is not in the succession."""
    transitions = [s for s in statements if s.kind == "transition"]
    if not transitions:
        return {key_id(pin): (pin, None)}
    first = transitions[0]
    assert first.from_public is not None
    keys: list[tuple[str, bytes, int | None]] = [(first.key_id, first.from_public, None)]
    for t in transitions:
        assert t.from_public is not None and t.to_public is not None and t.to_key_id is not None
        if (
            t.key_id != keys[-1][0]
            or key_id(t.from_public) != t.key_id
            or key_id(t.to_public) != t.to_key_id
            or not verify_statement(t.from_public, t.message, t.sig)
            or not verify_statement(t.to_public, t.message, t.new_sig)
        ):
            break
        through = t.after_checkpoint if t.compromised_since is None else min(t.after_checkpoint, t.compromised_since)
        keys[-1] = (keys[-1][0], keys[-1][1], through)
        keys.append((t.to_key_id, t.to_public, None))
    if not any(k == key_id(pin) and p == pin for k, p, _ in keys):
        return {key_id(pin): (pin, None)}  # outside the succession: only its own signatures
    return {k: (p, through) for k, p, through in keys}


def walk(
    statements: list[Statement], keys: Keys, force: str | None, prev: bytes, pin_id: str
) -> tuple[list[tuple[str, int, str]], str | None]:
    """Problems of a run of the chain: (stream, seq, problem) for every statement not chained to the one before,
    not signed by the key in force, or not verifying with a trusted key. Returns them and the key in force after."""
    out: list[tuple[str, int, str]] = []
    for s in statements:
        what = "checkpoint" if s.kind == "checkpoint" else "key transition"
        problem = None
        if s.prev_signed != prev:
            problem = "signed statements do not chain (a signed checkpoint or key transition was removed or replaced)"
        elif force is not None and s.key_id != force:
            problem = (
                f"checkpoint signed by key {s.key_id}, not by the key in force {force}: an unannounced key "
                "(no key transition hands over to it)"
                if s.kind == "checkpoint"
                else f"key transition signed by key {s.key_id}, not by the key in force {force}: a key not trusted"
            )
        elif s.key_id not in keys:
            problem = (
                f"{what} signed by key {s.key_id}, which the pinned key {pin_id} does not vouch for: an unannounced key"
            )
        elif not verify_statement(keys[s.key_id][0], s.message, s.sig):
            problem = (
                f"checkpoint signature (Ed25519) does not verify with the pinned key {pin_id}"
                if s.kind == "checkpoint"
                else f"key transition signature (Ed25519) does not verify with the old key {s.key_id}"
            )
        elif s.kind == "transition" and (
            s.to_key_id not in keys or not verify_statement(keys[s.to_key_id][0], s.message, s.new_sig)
        ):
            problem = f"key transition countersignature (Ed25519) does not verify with the new key {s.to_key_id}"
        if problem:
            out.append((s.label, s.ident, problem))
        if s.kind == "transition":
            force = s.to_key_id
        prev = s.chain_hash()
    return out, force


def chain_problems(statements: list[Statement], pin: bytes) -> list[tuple[str, int, str]]:
    """Every problem of the whole chain of signed statements, for a verifier pinned to `pin`."""
    transitions = [s for s in statements if s.kind == "transition"]
    force = transitions[0].key_id if transitions else key_id(pin)
    return walk(statements, trust(statements, pin), force, ZERO32, key_id(pin))[0]


def anchor_ok(keys: Keys, a: dict[str, Any], signer_key: str | None, sig: bytes | None) -> bool:
    """Does a retention anchor's signature count: a trusted key, on a checkpoint it could still consent on."""
    if sig is None or signer_key not in keys:
        return False
    pub, through = keys[signer_key]
    if through is not None and a["checkpoint_id"] > through:
        return False
    return verify_statement(pub, anchor_statement(a["stream"], a["seq"], bytes(a["hash"]), a["checkpoint_id"]), sig)


def _hex(v: Any) -> str:
    return v if isinstance(v, str) else bytes(v).hex()


def load_public_key(spec: str) -> bytes:
    """A pinned public key: 64 hex digits, or a file holding them."""
    text = spec.strip()
    if len(text) != 64 or not all(ch in "0123456789abcdefABCDEF" for ch in text):
        text = Path(spec).read_text().strip()
    raw = bytes.fromhex(text)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes (64 hex digits)")
    return raw


def verify_statement(public_key: bytes, statement: bytes, sig: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(sig, statement)
        return True
    except (InvalidSignature, ValueError):
        return False


def generate_key(path: Path) -> bytes:
    """A new key pair: the private key at `path` (PKCS#8 PEM, mode 0600, its
    directory 0700, both the caller's), the public key as hex at `path`.pub.
    Refuses to overwrite. Returns the public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    Path(str(path) + ".pub").write_text(pub.hex() + "\n")
    return pub


class Refused(Exception):
    """The signer will not sign: the database is not what it signed before."""

    def __init__(self, stream: str, seq: int, problem: str) -> None:
        super().__init__(f"stream {stream} seq {seq}: {problem}")
        self.stream, self.seq, self.problem = stream, seq, problem


@dataclass
class Signed:
    checkpoints: list[int]
    anchors: list[tuple[str, int]]


class Signer:
    def __init__(self, key_path: Path, state_path: Path | None = None, retention_min_days: float = 30.0) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{key_path} is not an Ed25519 private key")
        self.key = key
        self.public_key = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = key_id(self.public_key)
        self.state_path = state_path or Path(str(key_path) + ".state")
        self.retention_min_days = retention_min_days

    # -- the signer's own memory of what it signed, per database ------------
    def _state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return {}

    def _remember(self, db: str, checkpoint_id: int, statement_hash: bytes) -> None:
        state = self._state()
        state[db] = {"checkpoint_id": checkpoint_id, "statement_sha256": statement_hash.hex()}
        tmp = self.state_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh, indent=1, sort_keys=True)
        os.replace(tmp, self.state_path)

    # -- reading the database ------------------------------------------------
    @staticmethod
    def _checkpoint(conn: Any, checkpoint_id: int) -> dict[str, Any]:
        c = conn.execute(
            """SELECT c.checkpoint_id, audit._micros(c.created_at) AS created_at_us, c.reason, c.streams, c.entries,
                      c.root, c.prev_sig, c.key_id, s.key_id AS signer_key, s.prev_signed, s.sig AS signature
                 FROM audit.checkpoints c LEFT JOIN audit.checkpoint_signatures s USING (checkpoint_id)
                WHERE c.checkpoint_id = %s""",
            (checkpoint_id,),
        ).fetchone()
        c["heads"] = {
            h["stream"]: (h["seq"], bytes(h["hash"]))
            for h in conn.execute(
                "SELECT stream, seq, hash FROM audit.checkpoint_heads WHERE checkpoint_id = %s", (checkpoint_id,)
            )
        }
        return c

    def _signed_anchor(self, conn: Any, stream: str, min_seq: int) -> dict[str, Any] | None:
        """The highest anchor of a chain at or after min_seq that this signer signed."""
        for a in conn.execute(
            """SELECT a.stream, a.seq, a.hash, a.checkpoint_id, s.sig FROM audit.anchors a
                 JOIN audit.anchor_signatures s USING (stream, seq)
                WHERE a.stream = %s AND a.seq >= %s ORDER BY a.seq DESC""",
            (stream, min_seq),
        ):
            if verify_statement(
                self.public_key,
                anchor_statement(a["stream"], a["seq"], bytes(a["hash"]), a["checkpoint_id"]),
                bytes(a["sig"]),
            ):
                return a
        return None

    @staticmethod
    def _entries(conn: Any, ranges: list[tuple[str, int, int]]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        if not ranges:
            return out
        rows = conn.execute(
            """SELECT l.stream, l.seq, l.source, l.op, l.actor, l.app, l.txid, l.payload, l.prev_hash, l.hash,
                      timestamptz_send(l.logged_at) AS at, l.logged_at
                 FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) r(stream, lo, hi)
                 JOIN audit.log l ON l.stream = r.stream AND l.seq BETWEEN r.lo AND r.hi
                ORDER BY l.stream, l.seq""",
            ([r[0] for r in ranges], [r[1] for r in ranges], [r[2] for r in ranges]),
        )
        for e in rows:
            out.setdefault(e["stream"], []).append(e)
        return out

    def _walk(self, stream: str, entries: list[dict[str, Any]], lo: int, prev: bytes, hi: int, head: bytes) -> None:
        """Entries lo..hi of a chain: contiguous, each hash recomputed, each linked, ending at head."""
        expect = lo
        for e in entries:
            if e["seq"] != expect:
                raise Refused(stream, expect, f"entries {expect} to {e['seq'] - 1} are missing")
            if bytes(e["prev_hash"]) != prev:
                raise Refused(stream, e["seq"], "chain broken: prev_hash is not the previous entry's hash")
            if entry_hash(e) != bytes(e["hash"]):
                raise Refused(stream, e["seq"], "entry altered: its hash does not match its content")
            prev = bytes(e["hash"])
            expect += 1
        if expect != hi + 1:
            raise Refused(stream, expect, f"chain truncated: ends at {expect - 1}, the checkpoint has entry {hi}")
        if prev != head:
            raise Refused(stream, hi, "chain rewritten: the head differs from the checkpoint")

    def _statement_hash(self, c: dict[str, Any]) -> bytes:
        return hashlib.sha256(checkpoint_statement(c, bytes(c["prev_signed"])) + bytes(c["signature"])).digest()

    def check_checkpoint(self, conn: Any, c: dict[str, Any], prev: dict[str, Any] | None) -> None:
        cid = c["checkpoint_id"]
        if heads_root(c["heads"]) != bytes(c["root"]):
            raise Refused(f"checkpoint/{cid}", cid, "its heads do not match its root")
        if len(c["heads"]) != c["streams"] or sum(s for s, _ in c["heads"].values()) != c["entries"]:
            raise Refused(f"checkpoint/{cid}", cid, "its counts do not match its heads")
        ranges: list[tuple[str, int, int]] = []
        starts: dict[str, tuple[int, bytes]] = {}  # first seq to read, and the hash it must link to
        prev_heads = prev["heads"] if prev else {}
        for stream, (pseq, _phash) in prev_heads.items():
            moved_back = stream not in c["heads"] or c["heads"][stream][0] < pseq
            if moved_back and self._signed_anchor(conn, stream, pseq) is None:
                raise Refused(stream, pseq, "the signed head is gone without a retention anchor this signer signed")
        for stream, (seq, _) in c["heads"].items():
            if stream in prev_heads and prev_heads[stream][0] <= seq:
                pseq, phash = prev_heads[stream]
                first = conn.execute(
                    "SELECT hash FROM audit.log WHERE stream = %s AND seq = %s", (stream, pseq)
                ).fetchone()
                if first is not None:
                    if bytes(first["hash"]) != phash:
                        raise Refused(stream, pseq, "chain rewritten: entry differs from the signed checkpoint")
                    starts[stream] = (pseq + 1, phash)
                    ranges.append((stream, pseq + 1, seq))
                    continue
            low = conn.execute("SELECT min(seq) AS m FROM audit.log WHERE stream = %s", (stream,)).fetchone()["m"]
            if low is None:
                raise Refused(stream, seq, "chain truncated: no entries left")
            if low == 1:
                starts[stream] = (1, genesis(stream))
            else:
                a = self._signed_anchor(conn, stream, low - 1)
                if a is None or a["seq"] != low - 1:
                    raise Refused(stream, low, f"entries 1 to {low - 1} are missing (no anchor this signer signed)")
                starts[stream] = (low, bytes(a["hash"]))
            ranges.append((stream, starts[stream][0], seq))
        entries = self._entries(conn, ranges)
        for stream, (seq, head) in sorted(c["heads"].items()):
            lo, link = starts[stream]
            self._walk(stream, entries.get(stream, []), lo, link, seq, head)

    def head(self, conn: Any) -> tuple[dict[str, Any] | None, bytes]:
        """The last signed checkpoint and the hash of the last signed statement (the chain's head), once checked:
        the statements from that checkpoint on (it, and key transitions after it) must chain, each signed by the key
        in force with a key this signer's key vouches for, and the key in force must be this signer's."""
        last = conn.execute("SELECT max(checkpoint_id) AS m FROM audit.checkpoint_signatures").fetchone()["m"]
        prev = self._checkpoint(conn, last) if last is not None else None
        statements = read_statements(conn)
        keys = trust(statements, self.public_key)
        tail = [s for s in statements if s.position >= (last or 0, 0, 0)]
        if not tail:
            return prev, ZERO32
        problems, force = walk(tail, keys, tail[0].key_id, tail[0].prev_signed, self.key_id)
        if prev is not None and (tail[0].key_id not in keys or (problems and problems[0][0] == f"checkpoint/{last}")):
            raise Refused(f"checkpoint/{last}", last, "the last signed checkpoint is not one this signer signed")
        if problems:
            raise Refused(problems[0][0], problems[0][1], problems[0][2])
        if force != self.key_id:
            label = tail[-1].label
            raise Refused(label, tail[-1].ident, f"the key in force is {force}, not this signer's key {self.key_id}")
        return prev, tail[-1].chain_hash()

    def sign_checkpoints(self, conn: Any, db: str) -> list[int]:
        prev, head = self.head(conn)
        last: int = prev["checkpoint_id"] if prev is not None else 0
        remembered = self._state().get(db)
        if remembered and (prev is None or prev["checkpoint_id"] < remembered["checkpoint_id"]):
            raise Refused(
                f"checkpoint/{remembered['checkpoint_id']}",
                remembered["checkpoint_id"],
                "the database no longer holds the last checkpoint this signer signed (rolled back?)",
            )
        if prev is not None:
            if heads_root(prev["heads"]) != bytes(prev["root"]):
                raise Refused(f"checkpoint/{last}", last, "the last signed checkpoint's heads do not match its root")
            if (
                remembered is not None
                and remembered["checkpoint_id"] == last
                and self._statement_hash(prev).hex() != remembered["statement_sha256"]
            ):
                raise Refused(f"checkpoint/{last}", last, "the last signed checkpoint differs from what was signed")
        done: list[int] = []
        pending = [
            r["checkpoint_id"]
            for r in conn.execute(
                "SELECT checkpoint_id FROM audit.checkpoints WHERE checkpoint_id > %s ORDER BY checkpoint_id",
                (last or 0,),
            )
        ]
        for cid in pending:
            c = self._checkpoint(conn, cid)
            self.check_checkpoint(conn, c, prev)
            sig = self.key.sign(checkpoint_statement(c, head))
            conn.execute("SELECT audit.sign_checkpoint(%s, %s, %s)", (cid, self.key_id, sig))
            c.update(signer_key=self.key_id, prev_signed=head, signature=sig)
            head = self._statement_hash(c)
            self._remember(db, cid, head)
            done.append(cid)
            prev = c
        return done

    def sign_anchors(self, conn: Any) -> list[tuple[str, int]]:
        rows = conn.execute(
            """SELECT a.stream, a.seq, a.hash, a.checkpoint_id, h.seq AS head_seq, h.hash AS head_hash,
                      (SELECT max(s.checkpoint_id) FROM audit.checkpoint_signatures s) AS last_signed
                 FROM audit.anchors a
                 LEFT JOIN audit.checkpoint_heads h ON h.checkpoint_id = a.checkpoint_id AND h.stream = a.stream
                WHERE NOT EXISTS (SELECT 1 FROM audit.anchor_signatures s WHERE s.stream = a.stream AND s.seq = a.seq)
                ORDER BY a.stream, a.seq"""
        ).fetchall()
        todo = []
        for a in rows:
            signed = conn.execute(
                "SELECT 1 FROM audit.checkpoint_signatures WHERE checkpoint_id = %s", (a["checkpoint_id"],)
            ).fetchone()
            if signed is None or a["head_seq"] is None or a["seq"] > a["head_seq"]:
                continue  # its checkpoint is not signed (sign_checkpoints refused it) or does not cover it
            todo.append(a)
        # The anchors' checkpoints were checked and signed by this signer, or by a key it succeeded (their heads
        # against the signed roots).
        keys = trust(read_statements(conn), self.public_key) if todo else {}
        for cid in sorted({a["checkpoint_id"] for a in todo}):
            c = self._checkpoint(conn, cid)
            if c["signer_key"] not in keys or not verify_statement(
                keys[c["signer_key"]][0], checkpoint_statement(c, bytes(c["prev_signed"])), bytes(c["signature"])
            ):
                raise Refused(f"checkpoint/{cid}", cid, "an anchor's checkpoint is not one this signer signed")
            if heads_root(c["heads"]) != bytes(c["root"]):
                raise Refused(f"checkpoint/{cid}", cid, "an anchor's checkpoint heads do not match its root")
        entries = self._entries(conn, [(a["stream"], a["seq"], a["head_seq"]) for a in todo])
        done: list[tuple[str, int]] = []
        min_age = self.retention_min_days * 86400
        for a in todo:
            chain = entries.get(a["stream"], [])
            if not chain or chain[0]["seq"] != a["seq"]:
                raise Refused(a["stream"], a["seq"], "the anchored entry is not in the log")
            first = chain[0]
            if entry_hash(first) != bytes(a["hash"]) or bytes(first["hash"]) != bytes(a["hash"]):
                raise Refused(a["stream"], a["seq"], "the anchor does not name the entry's hash")
            self._walk(a["stream"], chain[1:], a["seq"] + 1, bytes(a["hash"]), a["head_seq"], bytes(a["head_hash"]))
            age = conn.execute("SELECT extract(epoch FROM now() - %s::timestamptz) AS s", (first["logged_at"],))
            if float(age.fetchone()["s"]) < min_age:
                raise Refused(
                    a["stream"],
                    a["seq"],
                    f"the anchored entry is younger than the signer's minimum age ({self.retention_min_days:g} days)",
                )
            sig = self.key.sign(anchor_statement(a["stream"], a["seq"], bytes(a["hash"]), a["checkpoint_id"]))
            conn.execute("SELECT audit.sign_anchor(%s, %s, %s, %s)", (a["stream"], a["seq"], self.key_id, sig))
            done.append((a["stream"], a["seq"]))
        return done

    def run(self, conn: Any) -> Signed:
        """Register the public key (idempotent), sign every pending checkpoint, then every pending anchor."""
        conn.execute("SELECT audit.register_signing_key(%s)", (self.public_key,))
        ident = conn.execute(
            """SELECT (SELECT system_identifier FROM pg_control_system()) || '/' || d.oid || '/' || d.datname AS id
                 FROM pg_database d WHERE d.datname = current_database()"""
        ).fetchone()["id"]
        return Signed(self.sign_checkpoints(conn, ident), self.sign_anchors(conn))


def _destroy(path: Path) -> None:
    """Overwrite a key file with zeros, to disk, before it is replaced or unlinked (on copy-on-write or flash
    storage the old blocks may survive: keep signer keys on an encrypted volume)."""
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.write(bytes(size))
        fh.flush()
        os.fsync(fh.fileno())


@dataclass
class Rotated:
    transition_id: int
    old_key_id: str
    new_key_id: str
    new_public_key: bytes


def rotate_key(conn: Any, key_path: Path, compromised_since: int | None = None) -> Rotated:
    """Hand the signing over to a new key pair: made beside the old one (`<key>.next`, mode 0600 in a 0700
    directory, like the first), the transition signed by the old key and countersigned by the new, stored in the
    database (audit.rotate_signing_key); then the old private key is destroyed and the new one takes its path
    (and `.pub`). The signer's state file stays. A rotation interrupted after the database stored it is completed
    by running it again; one interrupted before leaves `.next`, discarded at the next run."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    nxt = Path(str(key_path) + ".next")
    nxt_pub = Path(str(nxt) + ".pub")
    if nxt.exists():
        pending = Signer(nxt)
        stored = conn.execute(
            "SELECT transition_id, from_key_id FROM audit.key_transitions WHERE to_key_id = %s", (pending.key_id,)
        ).fetchone()
        if stored is not None:  # the database has it: finish the hand-over of the files (the old one may be zeros)
            if key_path.exists():
                _destroy(key_path)
            os.replace(nxt, key_path)
            os.replace(nxt_pub, Path(str(key_path) + ".pub"))
            return Rotated(stored["transition_id"], stored["from_key_id"], pending.key_id, pending.public_key)
        nxt.unlink()
        nxt_pub.unlink(missing_ok=True)
    old = Signer(key_path)
    conn.execute("SELECT audit.register_signing_key(%s)", (old.public_key,))
    _, head = old.head(conn)  # refused unless the chain is sound and the old key is in force
    after = conn.execute("SELECT coalesce(max(checkpoint_id), 0) AS m FROM audit.checkpoint_signatures").fetchone()["m"]
    new_public = generate_key(nxt)
    new = serialization.load_pem_private_key(nxt.read_bytes(), password=None)
    assert isinstance(new, Ed25519PrivateKey)
    statement = transition_statement(old.public_key, new_public, compromised_since, after, head)
    tid = conn.execute(
        "SELECT audit.rotate_signing_key(%s, %s, %s, %s, %s) AS id",
        (old.public_key, new_public, compromised_since, old.key.sign(statement), new.sign(statement)),
    ).fetchone()["id"]
    _destroy(key_path)
    os.replace(nxt, key_path)
    os.replace(nxt_pub, Path(str(key_path) + ".pub"))
    return Rotated(tid, old.key_id, key_id(new_public), new_public)
