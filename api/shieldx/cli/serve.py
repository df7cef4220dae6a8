"""`shieldx serve`: run the API under uvicorn."""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.command(help="Serve the HTTP API (uvicorn, uvloop, httptools).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="Worker processes.")
@click.option("--pidfile", type=click.Path(path_type=Path), default=None, help="Write the server's pid here.")
@click.option("--access-log/--no-access-log", default=False, show_default=True)
def cli(host: str, port: int, workers: int, pidfile: Path | None, access_log: bool) -> None:
    import uvicorn

    if pidfile:
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_text(f"{os.getpid()}\n")
    try:
        uvicorn.run(
            "shieldx.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            access_log=access_log,
            log_level="warning",
            timeout_graceful_shutdown=10,
        )
    finally:
        if pidfile and pidfile.exists():
            pidfile.unlink()
