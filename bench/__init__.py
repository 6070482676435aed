"""aiostack's benchmark suite: ``python -m bench [--quick]`` (see ``run_all.py``)."""
