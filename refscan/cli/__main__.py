"""`python -m refscan.cli`: the command line."""

from . import main

main()
