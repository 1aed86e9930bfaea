"""``python -m pillarbox.cli`` — the same as the ``pillarbox`` console script."""

from pillarbox.cli.main import main

main()
