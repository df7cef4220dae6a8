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
def cli(host: str, port: int, workers: int, pidfile: Path | None) -> None:
    import uvicorn

    from ..observability import multiproc
    from ..observability.logging import uvicorn_log_config

    metrics_dir = multiproc.prepare()  # before any worker imports prometheus-client
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
            access_log=False,  # uvicorn's would name full client addresses; the API logs a masked JSON line
            log_config=uvicorn_log_config(os.environ.get("SHIELDX_LOG_LEVEL", "INFO")),  # JSON on stderr
            ws="none",  # no WebSocket routes; uvicorn's WebSocket log lines would name client addresses
            timeout_graceful_shutdown=10,
        )
    finally:
        multiproc.cleanup(metrics_dir)
        if pidfile and pidfile.exists():
            pidfile.unlink()
