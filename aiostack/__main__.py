"""``python -m aiostack``: the same as the ``aiostack`` command."""

from aiostack.cli import main

raise SystemExit(main())
