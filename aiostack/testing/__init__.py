"""Helpers for aiostack's own tests and examples: namespaces, TAPs, virtual networks.

Import the submodules directly (``from aiostack.testing.netns import ...``);
nothing here is imported by the library itself.
"""
