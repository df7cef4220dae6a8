"""`shieldx bench`: run benchmark suites, write bench/results.json, print a table."""

from __future__ import annotations

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table


@click.command(help="Measure performance; merge metrics into bench/results.json.")
@click.option("--only", multiple=True, help="Run only these suites (repeatable).")
@click.option("--seconds", default=10.0, show_default=True, help="Length of each timed run.")
@click.option("--port", default=55432, show_default=True, help="Local cluster port.")
def cli(only: tuple[str, ...], seconds: float, port: int) -> None:
    from ..benchmarks import suites
    from ..benchmarks.harness import Harness, save_results

    chosen = {k: v for k, v in suites().items() if not only or k in only}
    if only and set(only) - set(chosen):
        raise click.BadParameter(f"unknown suite(s): {', '.join(sorted(set(only) - set(chosen)))}")
    console = Console()
    metrics: dict[str, float] = {}
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("bench", total=len(chosen))
        for name, run in chosen.items():

            def say(message: str, name: str = name) -> None:
                progress.update(task, description=f"[{name}] {message}")

            new = run(Harness(port=port, seconds=seconds, progress=say))
            metrics.update(new)
            save_results(new)  # keep what finished even if a later suite fails
            progress.advance(task)
    table = Table(title="bench/results.json (this run)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in sorted(metrics.items()):
        table.add_row(k, f"{v:,.4g}")
    console.print(table)
