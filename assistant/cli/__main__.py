"""`python -m assistant.cli` runs the same command as the `assistant` script."""

from assistant.cli.main import main

main()
