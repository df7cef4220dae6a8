"""`python -m shieldx`: the `shieldx` command (the same click group as the console script)."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="shieldx")
