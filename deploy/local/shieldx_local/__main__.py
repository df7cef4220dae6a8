"""`python -m shieldx_local ...`"""

from .cli import main

if __name__ == "__main__":
    main(prog_name="python -m shieldx_local")
