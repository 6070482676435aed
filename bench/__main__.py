"""``python -m bench``: run the whole suite (see :mod:`bench.run_all`)."""

from bench.run_all import main

raise SystemExit(main())
