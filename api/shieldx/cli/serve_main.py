"""`python -m shieldx.cli.serve_main`: the serve verb as a module (for benchmarks and tests)."""

from .serve import cli

if __name__ == "__main__":
    cli()
