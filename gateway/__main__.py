"""``python -m gateway``: the ``gateway`` command line, without the console script."""

from gateway.cli import main

main()
