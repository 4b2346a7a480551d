"""`python -m scorax`: the command line (see `scorax --help`)."""

from ._cli import main


if __name__ == "__main__":
    raise SystemExit(main())
