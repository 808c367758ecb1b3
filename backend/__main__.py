"""`python -m backend` and the `vexport` console script (backend/cli)."""

from backend.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
