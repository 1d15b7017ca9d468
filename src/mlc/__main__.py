"""`python -m mlc` runs the command line, like the `mlc` script."""

from mlc.cli import main

main()
