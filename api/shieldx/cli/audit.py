"""`shieldx audit`: verify the tamper-evident audit log; export signed checkpoints.

    shieldx audit verify [--incremental] [--no-ledger] [--against checkpoint.json]
    shieldx audit checkpoint export [--new] [-o checkpoint.json]

Verification runs in the database (audit.verify_streams), in slices of
chains so a progress bar can follow it; the first broken entry is printed
with its stream, sequence number and the reason. `--against` also checks the
log against a checkpoint exported earlier: its Merkle root is recomputed here
from its heads (no key needed), then every head must still be in the log.
Exit status: 0 verified, 1 broken, 2 usage or connection errors.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .common import admin_url

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


@cli.command(help="Recompute every hash chain and name the first broken entry.")
@click.option("--incremental", is_flag=True, help="Start each chain at the last checkpoint.")
@click.option(
    "--ledger/--no-ledger",
    default=True,
    show_default=True,
    help="Also compare the journal (credits.entries) with its audit chains.",
)
@click.option(
    "--against",
    "against",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An exported checkpoint to verify the log against.",
)
@click.option("--url", default=None, help="Database URL (default: SHIELDX_ADMIN_URL or the local cluster).")
def verify(incremental: bool, ledger: bool, against: Path | None, url: str | None) -> None:
    import psycopg
    from psycopg.rows import dict_row
    from psycopg.types.json import Jsonb

    console = Console()
    problems: list[dict] = []
    with psycopg.connect(url or admin_url(), autocommit=True, row_factory=dict_row) as conn:
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
                    "SELECT * FROM audit.verify_streams(%s, %s, %s, %s)", (incremental, ledger, lo, hi)
                ).fetchall()
                progress.advance(task, sum(h["seq"] for h in heads[first:end]))
        export = None
        if against:
            doc = json.loads(against.read_text())
            if merkle_root(doc.get("heads", {})) != doc.get("root"):
                console.print(f"[red]{against}: its heads do not match its root; the file was altered[/red]")
                sys.exit(1)
            export = conn.execute("SELECT * FROM audit.verify_export(%s)", (Jsonb(doc),)).fetchone()
    problems.sort(key=lambda p: (p["logged_at"] is not None, p["logged_at"] or 0, p["stream"], p["seq"]))
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


@cli.group(help="Signed checkpoints.")
def checkpoint() -> None:
    pass


@checkpoint.command(help="Write the latest signed checkpoint to a file kept outside the database.")
@click.option("--new", "new", is_flag=True, help="Take a new checkpoint first.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (default: audit-checkpoint-<id>.json).",
)
@click.option("--url", default=None)
def export(new: bool, output: Path | None, url: str | None) -> None:
    import psycopg

    # Checked before a checkpoint is taken: --new must not sign one that cannot be written.
    if output is not None and not output.parent.is_dir():
        raise click.ClickException(f"cannot write {output}: directory {output.parent} does not exist")
    with psycopg.connect(url or admin_url(), autocommit=True) as conn:
        if new:
            conn.execute("SELECT * FROM audit.checkpoint('manual')")
        row = conn.execute("SELECT audit.export_checkpoint()").fetchone()
    assert row is not None  # a SELECT without FROM answers one row
    doc = row[0]
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
