"""``python -m qcat``: the same as the ``qcat`` command."""

from qcat.cli import main

main()
