"""Reading packetdrill scripts: lexer, parser and the typed script model.

packetdrill (Google's network-stack test tool) scripts are timelines of
system calls, injected packets and expected packets. This package turns a
script into a :class:`~aiostack.testing.packetdrill.ast.Script` with the
grammar of packetdrill's own ``parser.y``, so that aiostack's runner and the
Linux-target runner execute exactly what packetdrill would. Errors are one
exception type, :class:`PacketdrillSyntaxError`, naming ``file:line:column``.

>>> from aiostack.testing.packetdrill import parse
>>> script = parse("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\\n")
>>> script.events[0].body.name
'socket'
"""

from __future__ import annotations

from . import ast
from .errors import PacketdrillSyntaxError
from .parser import parse, parse_file

__all__ = ["PacketdrillSyntaxError", "ast", "parse", "parse_file"]
