"""Reading packetdrill scripts: lexer, parser and the typed script model.

packetdrill (Google's network-stack test tool) scripts are timelines of
system calls, injected packets and expected packets. This package turns a
script into a :class:`~aiostack.testing.packetdrill.ast.Script` with the
grammar of packetdrill's own ``parser.y``, so that aiostack's runner and the
Linux-target runner execute exactly what packetdrill would. Errors are one
exception type, :class:`PacketdrillSyntaxError`, naming ``file:line:column``.

Running scripts: :func:`aiostack.testing.packetdrill.runner.run_script_file`
(``aiostack packetdrill`` on the command line) executes one against aiostack
on virtual time (:mod:`.aiostack_target`) or against the Linux kernel in a
namespace of its own (:mod:`.linux`); :mod:`.flows` tells which connection
a packet line is about, :mod:`.packets` builds and matches the packets,
:mod:`.syscalls` makes the calls through a :class:`.kernel.Kernel`.

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
