"""`shieldx audit`: verify the tamper-evident audit log; sign and export checkpoints.

    shieldx audit verify [--incremental] [--no-ledger] [--no-journal] [--pubkey KEY] [--against checkpoint.json]
                         [--timeout SECONDS]
    shieldx audit checkpoint export [--new] [-o checkpoint.json]
    shieldx audit keygen [--key PATH]
    shieldx audit pubkey [--key PATH]
    shieldx audit sign [--key PATH] [--retention-min-days N] [--every SECONDS]
    shieldx audit signer rotate [--key PATH] [--compromised-since CHECKPOINT_ID]

Verification runs in the database (audit.verify_streams), in slices of
chains so a progress bar can follow it, the journal's content included
(--no-journal skips comparing every journal row with its audit entry); the
first broken entry is printed with its stream, sequence number and the
reason. Then, here, outside the database, with the signer's public key pinned
(--pubkey, else SHIELDX_AUDIT_PUBKEY, else the .pub file next to the local
signer key): every checkpoint and retention anchor signature and the chain of
signed checkpoints and key transitions (after a rotation, `signer rotate`, the
pinned key vouches for the keys it handed over to and for those before it;
any other key is refused), and the last signed checkpoint's heads, each head
entry's hash recomputed. `--against` also checks the log against a checkpoint
exported earlier: its signature and Merkle root are checked here, then every
head must still be in the log and the database must still hold that signed
checkpoint (a rollback shows). Its statements run with no statement_timeout
(whatever a role or database setting says) unless --timeout gives one.
Exit status: 0 verified, 1 broken, 2 usage or connection errors, or a statement
that outran --timeout.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .. import signer
from ..config import timeout_ms
from .common import CLUSTER, admin_url

SLICES = 32


def _f(value: str) -> str:
    return f"{len(value)}:{value}"


def merkle_root(heads: dict[str, list]) -> str:
    """The root audit._merkle_root computes, from an exported checkpoint's heads."""
    level = [
        hashlib.sha256(b"\x00" + ("SXL1" + _f(stream) + _f(str(seq))).encode() + bytes.fromhex(h)).digest()
        for stream, (seq, h) in sorted(heads.items(), key=lambda kv: kv[0].encode())
    ]
    if not level:
        return hashlib.sha256(b"").hexdigest()
    while len(level) > 1:
        nxt = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0].hex()


@click.group(help="Tamper-evident audit log: verify it, export signed checkpoints.")
def cli() -> None:
    pass


def default_key_path() -> Path:
    """The signer's private key: SHIELDX_AUDIT_SIGNING_KEY, else <state dir>/signer/audit_ed25519.key."""
    env = os.environ.get("SHIELDX_AUDIT_SIGNING_KEY")
    if env:
        return Path(env)
    state = subprocess.run([str(CLUSTER), "state-dir"], check=True, capture_output=True, text=True).stdout.strip()
    return Path(state) / "signer" / "audit_ed25519.key"


def pinned_key(spec: str | None) -> bytes | None:
    """The public key to verify against: --pubkey, SHIELDX_AUDIT_PUBKEY, or the local signer's .pub file."""
    spec = spec or os.environ.get("SHIELDX_AUDIT_PUBKEY")
    if not spec:
        try:
            pub = Path(str(default_key_path()) + ".pub")
        except (OSError, subprocess.CalledProcessError):
            return None
        if not pub.exists():
            return None
        spec = str(pub)
    return signer.load_public_key(spec)


def signature_problems(conn, pub: bytes) -> list[dict]:
    """The chain of signed statements (checkpoint signatures, key transitions) and every anchor a chain starts at,
    checked here against the pinned key and the keys it vouches for (key rotation: signer.trust); the last signed
    checkpoint's heads against its root and against the log (each head entry's hash recomputed here)."""
    problems: list[dict] = []

    def bad(stream: str, seq: int, problem: str) -> None:
        problems.append({"stream": stream, "seq": seq, "logged_at": None, "problem": problem})

    kid = signer.key_id(pub)
    statements = signer.read_statements(conn)
    for stream, seq, problem in signer.chain_problems(statements, pub):
        bad(stream, seq, problem)
    keys = signer.trust(statements, pub)
    checkpoints = [s for s in statements if s.kind == "checkpoint"]
    last = None
    if checkpoints:
        last = conn.execute(
            "SELECT checkpoint_id, root FROM audit.checkpoints WHERE checkpoint_id = %s", (checkpoints[-1].ident,)
        ).fetchone()
    for a in conn.execute(
        """SELECT a.stream, a.seq, a.hash, a.checkpoint_id, s.key_id, s.sig FROM audit.anchors a
             LEFT JOIN audit.anchor_signatures s USING (stream, seq)
            WHERE s.sig IS NOT NULL  -- signed, or unsigned but the chain starts there
               OR NOT EXISTS (SELECT 1 FROM audit.log l WHERE l.stream = a.stream AND l.seq <= a.seq)"""
    ):
        if not signer.anchor_ok(keys, a, a["key_id"], None if a["sig"] is None else bytes(a["sig"])):
            bad(
                a["stream"],
                a["seq"] + 1,
                f"retention anchor at {a['seq']} is not signed with the pinned key {kid} or a key it vouches for "
                f"(that could still sign anchors on checkpoint {a['checkpoint_id']})",
            )
    for t in statements:
        if t.kind == "transition" and t.key_id == kid and t.compromised_since is not None:
            bad(
                t.label,
                t.ident,
                f"the pinned key {kid} was revoked (compromised since checkpoint {t.compromised_since}): "
                f"pin {t.to_key_id}, obtained out of band (anyone holding {kid} can forge a hand-over)",
            )
    if last is not None:
        cid = last["checkpoint_id"]
        heads = {
            h["stream"]: (h["seq"], bytes(h["hash"]))
            for h in conn.execute(
                "SELECT stream, seq, hash FROM audit.checkpoint_heads WHERE checkpoint_id = %s", (cid,)
            )
        }
        if signer.heads_root(heads) != bytes(last["root"]):
            bad(f"checkpoint/{cid}", cid, "the last signed checkpoint's heads do not match its signed root")
        found = {
            e["stream"]: e
            for e in conn.execute(
                """SELECT l.stream, l.seq, l.source, l.op, l.actor, l.app, l.txid, l.payload, l.prev_hash, l.hash,
                          timestamptz_send(l.logged_at) AS at
                     FROM unnest(%s::text[], %s::bigint[]) h(stream, seq)
                     JOIN audit.log l ON l.stream = h.stream AND l.seq = h.seq""",
                (list(heads), [v[0] for v in heads.values()]),
            )
        }
        for stream, (seq, h) in sorted(heads.items()):
            e = found.get(stream)
            if e is None:
                anchored = conn.execute(
                    "SELECT 1 FROM audit.anchors WHERE stream = %s AND seq >= %s", (stream, seq)
                ).fetchone()
                if anchored is None:
                    bad(stream, seq, f"entry {seq} of the last signed checkpoint is gone")
            elif bytes(e["hash"]) != h or signer.entry_hash(e) != h:
                bad(stream, seq, f"chain rewritten: entry {seq} differs from the last signed checkpoint")
    return problems


@cli.command(help="Recompute every hash chain and name the first broken entry.")
@click.option("--incremental", is_flag=True, help="Start each chain at the last checkpoint.")
@click.option(
    "--ledger/--no-ledger",
    default=True,
    show_default=True,
    help="Also compare the journal (credits.entries) with its audit chains.",
)
@click.option(
    "--journal/--no-journal",
    default=True,
    show_default=True,
    help="Also compare every journal row's content with its audit entry.",
)
@click.option(
    "--pubkey",
    default=None,
    help="The signer's public key (64 hex digits, or a file): default SHIELDX_AUDIT_PUBKEY, then the local .pub.",
)
@click.option(
    "--against",
    "against",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An exported checkpoint to verify the log against.",
)
@click.option(
    "--timeout",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds each verification statement may run (its statement_timeout); 0: no limit, whatever the server, "
    "database or role sets.",
)
@click.option("--url", default=None, help="Database URL (default: SHIELDX_ADMIN_URL or the local cluster).")
def verify(**options: Any) -> None:
    import psycopg

    try:
        _verify(**options)  # the options above, by name
    except psycopg.errors.QueryCanceled as exc:
        click.echo(
            f"verification did not finish: {exc.diag.message_primary} (statement_timeout {options['timeout']:g} s; "
            "--timeout 0 for no limit)",
            err=True,
        )
        sys.exit(2)


def _verify(
    incremental: bool,
    ledger: bool,
    journal: bool,
    pubkey: str | None,
    against: Path | None,
    timeout: float,
    url: str | None,
) -> None:
    import psycopg
    from psycopg.rows import dict_row
    from psycopg.types.json import Jsonb

    console = Console()
    problems: list[dict] = []
    pub = pinned_key(pubkey)
    # A full verify of a big log runs for minutes: the session's own statement_timeout, never one a role or
    # database setting (ALTER ROLE ... SET statement_timeout) gives every session.
    options = f"-c statement_timeout={timeout_ms(timeout)}"
    with psycopg.connect(url or admin_url(), autocommit=True, row_factory=dict_row, options=options) as conn:
        heads = conn.execute("SELECT stream, max(seq) AS seq FROM audit.log GROUP BY stream ORDER BY stream").fetchall()
        total = sum(h["seq"] for h in heads)
        # Slices of chains with about the same number of entries each: [start, next start).
        starts: list[int] = [0]
        acc, per = 0, max(1, total // SLICES)
        for i, h in enumerate(heads[:-1]):
            acc += h["seq"]
            if acc >= per:
                starts.append(i + 1)
                acc = 0
        with Progress(
            TextColumn("verifying"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("verify", total=total or 1)
            for k, first in enumerate(starts):
                end = starts[k + 1] if k + 1 < len(starts) else len(heads)
                lo = None if k == 0 else heads[first]["stream"]
                hi = heads[end]["stream"] if end < len(heads) else None
                problems += conn.execute(
                    "SELECT * FROM audit.verify_streams(%s, %s, %s, %s, %s)", (incremental, ledger, lo, hi, journal)
                ).fetchall()
                progress.advance(task, sum(h["seq"] for h in heads[first:end]))
        if pub is not None:
            problems += signature_problems(conn, pub)
        export = None
        if against:
            doc = json.loads(against.read_text())
            refusal = export_refusal(doc, pub)
            if refusal:
                console.print(f"[red]{against}: {refusal}[/red]")
                sys.exit(1)
            export = conn.execute("SELECT * FROM audit.verify_export(%s, %s)", (Jsonb(doc), pub)).fetchone()
    problems.sort(key=lambda p: (p["logged_at"] is not None, p["logged_at"] or 0, p["stream"], p["seq"]))
    if not journal and ledger:
        console.print("[yellow]journal content NOT compared with the audit log (--no-journal)[/yellow]")
    if pub is None:
        console.print(
            "[yellow]no signer public key pinned (--pubkey or SHIELDX_AUDIT_PUBKEY): signatures were checked "
            "only against the keys registered in the database, which a superuser can add to[/yellow]"
        )
    if problems:
        broken = problems[0]
        console.print(
            f"[red]BROKEN[/red]: {len(problems)} chain(s); first broken entry: "
            f"stream {broken['stream']} seq {broken['seq']}: {broken['problem']}"
        )
    else:
        console.print(f"[green]verified[/green] {total:,} entries in {len(heads):,} chains")
    if export is not None:
        if export["ok"]:
            console.print(
                f"[green]matches[/green] exported checkpoint {export['checkpoint_id']} "
                f"({export['heads_checked']} heads)"
            )
        else:
            console.print(
                f"[red]differs from exported checkpoint {export['checkpoint_id']}[/red]: "
                f"stream {export['stream']} seq {export['seq']}: {export['problem']}"
            )
    sys.exit(1 if problems or (export is not None and not export["ok"]) else 0)


def export_hash(doc: dict) -> bytes:
    """The hash the next signed checkpoint names as prev_signed: SHA-256(statement || signature)."""
    sig = doc["signature"]
    statement = signer.checkpoint_statement(doc, bytes.fromhex(sig["prev_signed"]))
    return hashlib.sha256(statement + bytes.fromhex(sig["sig"])).digest()


def descent_problem(conn, old: dict, new: dict, pub: bytes | None) -> str | None:
    """Why `new` does not descend from `old`: the signed statements between them (checkpoints and key transitions),
    read from the database and each signature checked here (pinned key and the keys it vouches for), must link
    old's hash to new's prev_signed."""
    if new["checkpoint_id"] < old["checkpoint_id"]:
        return f"it is older than checkpoint {old['checkpoint_id']} (a rollback?)"
    if new["checkpoint_id"] == old["checkpoint_id"]:
        return None if export_hash(new) == export_hash(old) else "the same checkpoint, signed differently"
    statements = signer.read_statements(conn, old["checkpoint_id"])
    between = [s for s in statements if (old["checkpoint_id"], 1, 0) <= s.position < (new["checkpoint_id"], 0, 0)]
    problems: list[tuple[str, int, str]] = []
    if pub is not None and between:
        everything = signer.read_statements(conn)
        keys = signer.trust(everything, pub)
        force = next(
            (s.to_key_id if s.kind == "transition" else s.key_id)
            for s in reversed(everything)
            if s.position < between[0].position
        )
        problems, _ = signer.walk(between, keys, force, between[0].prev_signed, signer.key_id(pub))
    link = export_hash(old)
    for s in between:
        if s.prev_signed != link:
            return f"signed {s.label} does not follow the previous export's chain"
        if any(p[0] == s.label for p in problems):
            return f"signed {s.label}: " + next(p[2] for p in problems if p[0] == s.label)
        link = s.chain_hash()
    if bytes.fromhex(new["signature"]["prev_signed"]) != link:
        return "its prev_signed does not link to the previous export"
    return None


def export_refusal(doc: dict, pub: bytes | None) -> str | None:
    """Why an exported checkpoint cannot be trusted, checked here: its root, its signature by the pinned key or by
    a key the pinned key handed over to through the key transitions the export carries (each signed by the key in
    force and countersigned by the next)."""
    if merkle_root(doc.get("heads", {})) != doc.get("root"):
        return "its heads do not match its root; the file was altered"
    sig = doc.get("signature") or {}
    if not sig.get("sig") or not sig.get("prev_signed"):
        return "it is not signed by the audit signer"
    if pub is None:
        return None  # the database checks it against the registered key
    kid = signer.key_id(pub)
    signing_key: bytes | None = pub if sig.get("key_id") == kid else None
    force = None
    for t in map(signer.transition_from_row, doc.get("transitions") or []):
        if force is None and t.key_id == kid:
            force = kid
        if force is None:
            continue  # before the pinned key
        if t.key_id != force:
            return f"its {t.label} is signed by key {t.key_id}, not by the key in force {force}: a key not trusted"
        assert t.from_public is not None and t.to_public is not None
        if signer.key_id(t.from_public) != t.key_id or signer.key_id(t.to_public) != t.to_key_id:
            return f"its {t.label} names public keys that are not its key ids"
        if force == kid and t.from_public != pub:
            return f"its {t.label} names another public key for the pinned key id {kid}"
        if not signer.verify_statement(t.from_public, t.message, t.sig):
            return f"its {t.label} signature (Ed25519) does not verify with the old key {t.key_id}"
        if not signer.verify_statement(t.to_public, t.message, t.new_sig):
            return f"its {t.label} countersignature (Ed25519) does not verify with the new key {t.to_key_id}"
        force = t.to_key_id
        signing_key = t.to_public if sig.get("key_id") == force else None
    if signing_key is None:
        return (
            f"it is signed by key {sig.get('key_id')}, not by the pinned key {kid} nor by a key it handed over to "
            "(an unannounced key)"
        )
    statement = signer.checkpoint_statement(doc, bytes.fromhex(sig["prev_signed"]))
    if not signer.verify_statement(signing_key, statement, bytes.fromhex(sig["sig"])):
        which = (
            f"the pinned key {kid}"
            if signing_key == pub
            else f"the key {sig.get('key_id')} the pinned key handed over to"
        )
        return f"its signature (Ed25519) does not verify with {which}"
    return None


@cli.command(help="Make the signer's Ed25519 key pair (private key mode 0600, readable by this user only).")
@click.option("--key", "key", type=click.Path(dir_okay=False, path_type=Path), default=None)
def keygen(key: Path | None) -> None:
    path = key or default_key_path()
    if path.exists():
        pub = signer.load_public_key(str(path) + ".pub")
        click.echo(f"{path} exists: {signer.key_id(pub)} {pub.hex()}")
        return
    pub = signer.generate_key(path)
    click.echo(f"{path}: {signer.key_id(pub)} {pub.hex()}")


@cli.command(help="Print the signer's public key (64 hex digits), for verifiers to pin.")
@click.option("--key", "key", type=click.Path(dir_okay=False, path_type=Path), default=None)
def pubkey(key: Path | None) -> None:
    click.echo(signer.load_public_key(str(key or default_key_path()) + ".pub").hex())


@cli.command(help="Check and sign pending checkpoints and retention anchors with the signer's private key.")
@click.option("--key", "key", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option(
    "--retention-min-days",
    type=float,
    default=30.0,
    show_default=True,
    help="Never sign a retention anchor on an entry younger than this.",
)
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="What the signer remembers signing, per database (default: the key's path + .state).",
)
@click.option("--every", type=float, default=None, help="Keep running, signing every this many seconds.")
@click.option("--url", default=None)
def sign(key: Path | None, retention_min_days: float, state: Path | None, every: float | None, url: str | None) -> None:
    import psycopg
    from psycopg.rows import dict_row

    s = signer.Signer(key or default_key_path(), state_path=state, retention_min_days=retention_min_days)
    while True:
        try:
            with psycopg.connect(url or admin_url(), autocommit=True, row_factory=dict_row) as conn:
                done = s.run(conn)
        except signer.Refused as exc:
            click.echo(f"REFUSED: {exc}", err=True)
            sys.exit(1)
        click.echo(
            f"signed {len(done.checkpoints)} checkpoint(s) and {len(done.anchors)} retention anchor(s) as {s.key_id}"
        )
        if every is None:
            return
        time.sleep(every)


@cli.group(help="The audit signer's key.")
def signer_group() -> None:
    pass


cli.add_command(signer_group, "signer")


@signer_group.command(
    help="Hand the signing over to a new Ed25519 key pair: the old key signs the hand-over, the new one countersigns "
    "it, then the old private key is destroyed. Verifiers pinned to the old key follow it; with "
    "--compromised-since the old key is revoked: its retention anchor signatures on later checkpoints stop counting, "
    "verifiers pinned to it are told to re-pin, and since whoever holds it can forge a hand-over of their own, the "
    "new public key must reach them out of band."
)
@click.option("--key", "key", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option(
    "--compromised-since",
    type=int,
    default=None,
    help="Revoke the old key: the last checkpoint on which its retention anchors still count (0: none do).",
)
@click.option("--url", default=None)
def rotate(key: Path | None, compromised_since: int | None, url: str | None) -> None:
    import psycopg
    from psycopg.rows import dict_row

    path = key or default_key_path()
    try:
        with psycopg.connect(url or admin_url(), autocommit=True, row_factory=dict_row) as conn:
            done = signer.rotate_key(conn, path, compromised_since)
    except signer.Refused as exc:
        click.echo(f"REFUSED: {exc}", err=True)
        sys.exit(1)
    except psycopg.Error as exc:
        click.echo(f"REFUSED: {exc.diag.message_primary}", err=True)
        sys.exit(1)
    click.echo(
        f"key transition {done.transition_id}: {done.old_key_id} -> {done.new_key_id}"
        f"{' (old key revoked)' if compromised_since is not None else ''}; the old private key is destroyed; "
        f"{path} now holds the new key, public key {done.new_public_key.hex()}"
    )


@cli.group(help="Signed checkpoints.")
def checkpoint() -> None:
    pass


@checkpoint.command(help="Write the latest signed checkpoint to a file kept outside the database.")
@click.option(
    "--new",
    "new",
    is_flag=True,
    help="Take a new checkpoint first (and sign it, if this user can read the signer key).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (default: audit-checkpoint-<id>.json).",
)
@click.option(
    "--previous",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The export before this one: check the new one descends from it (else exit 1, nothing written).",
)
@click.option("--url", default=None)
def export(new: bool, output: Path | None, previous: Path | None, url: str | None) -> None:
    import psycopg
    from psycopg.rows import dict_row

    # Checked before a checkpoint is taken: --new must not sign one that cannot be written.
    if output is not None and not output.parent.is_dir():
        raise click.ClickException(f"cannot write {output}: directory {output.parent} does not exist")
    with psycopg.connect(url or admin_url(), autocommit=True, row_factory=dict_row) as conn:
        if new:
            conn.execute("SELECT * FROM audit.checkpoint('manual')")
            path = default_key_path()
            if os.access(path, os.R_OK):  # this user is the signer: sign it now
                signer.Signer(path).run(conn)
        row = conn.execute("SELECT audit.export_checkpoint() AS doc").fetchone()
        assert row is not None
        doc = row["doc"]
        if previous is not None:
            problem = descent_problem(conn, json.loads(previous.read_text()), doc, pinned_key(None))
            if problem:
                click.echo(
                    f"REFUSED: checkpoint {doc['checkpoint_id']} does not descend from {previous}: {problem}", err=True
                )
                sys.exit(1)
    path = output or Path(f"audit-checkpoint-{doc['checkpoint_id']}.json")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    click.echo(
        f"checkpoint {doc['checkpoint_id']}: {doc['streams']} chains, {doc['entries']} entries, "
        f"root {doc['root']} -> {path}"
    )
