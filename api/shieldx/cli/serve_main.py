"""`python -m shieldx.cli.serve_main`: the serve verb as a module (for benchmarks and tests)."""

from .serve import cli as serve  # not named `cli`: this module is no verb of its own

if __name__ == "__main__":
    serve()
