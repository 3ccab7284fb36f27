"""``python -m chronograd ...``: the ``chronograd`` command (``chronograd.cli.main``)."""

from chronograd.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
