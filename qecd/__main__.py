"""``python -m qecd`` runs the command-line interface."""

from qecd.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
