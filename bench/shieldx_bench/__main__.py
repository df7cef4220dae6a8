"""`python -m shieldx_bench [--only SUITE]`: run benchmark suites, record bench/results.json, print a table."""

from __future__ import annotations

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import suites
from .harness import RESULTS, Harness, default_port, save_results


@click.command(help="Measure performance; record each suite's metrics and run facts in bench/results.json.")
@click.option("--only", multiple=True, help="Run only these suites (repeatable).")
@click.option("--seconds", default=10.0, show_default=True, help="Length of each timed run.")
@click.option(
    "--port", type=int, default=default_port, show_default="$SHIELDX_PGPORT or 55432", help="Local cluster port."
)
def main(only: tuple[str, ...], seconds: float, port: int) -> None:
    chosen = {k: v for k, v in suites().items() if not only or k in only}
    if only and set(only) - set(chosen):
        raise click.BadParameter(
            f"unknown suite(s): {', '.join(sorted(set(only) - set(chosen)))}; known: {', '.join(suites())}"
        )
    console = Console()
    metrics: dict[str, float] = {}
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("bench", total=len(chosen))
        for name, run in chosen.items():

            def say(message: str, name: str = name) -> None:
                progress.update(task, description=f"[{name}] {message}")

            h = Harness(port=port, seconds=seconds, progress=say)
            new = run(h)
            if h.cluster is None:  # the suite measured the local cluster
                h.record_cluster(h.admin_url("postgres"))
            metrics.update(new)
            save_results(name, new, h.cluster, seconds)  # keep what finished even if a later suite fails
            progress.advance(task)
    table = Table(title=f"{RESULTS.relative_to(RESULTS.parents[1])} (this run)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in sorted(metrics.items()):
        table.add_row(k, f"{v:,.4g}")
    console.print(table)


if __name__ == "__main__":
    main(prog_name="python -m shieldx_bench")
