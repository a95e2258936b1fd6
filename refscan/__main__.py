"""`python -m refscan`: the command line."""

from .cli import main

main()
