"""The Python samples of docs/guide.md run, so the guide cannot drift from the code.

Every ```` ```python ```` block of the guide is collected. A block preceded by
``<!-- docs-test: skip REASON -->`` is not run (it needs root and a TAP, say)
and must give a reason; every other block runs here, on both event loops,
with a 30-second bound:

- A whole program (one with a top-level ``asyncio.run(main())``) runs as
  written, except that ``asyncio.run(X)`` becomes ``await X`` so the test's
  own loop runs it.
- A fragment runs as the body of a coroutine (top-level ``await`` allowed).
  The names it uses without defining are what the guide's prose gives it:
  ``left`` (198.18.0.1) and ``right`` (198.18.0.2), two seeded stacks on a
  ``MemoryWire``, ``left`` privileged; ``stack`` is ``left``; ``device`` an
  unopened in-memory device; ``sock`` a TCP socket of ``left`` connected
  to ``right``; ``handle`` the echo handler of the Streams section;
  ``server_context``/``client_context`` TLS contexts for ``echo.example``
  (trustme). Any other free name fails the test: a sample must import
  what it uses.

Files a sample writes (a pcap) land in a temporary directory. Tasks a
sample starts (a server's connection handlers) must end on their own
within 10 s of the sample's last line.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import contextlib
import inspect
import re
import ssl
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from aiostack import AF_INET, SOCK_STREAM, MemoryWire, Stack

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guide.md"

_FENCE = re.compile(r"^( *)```python\n(.*?)^\1```$", re.S | re.M)
_DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(\w+)\s*(.*?)\s*-->\s*\Z", re.S)


@dataclass(frozen=True)
class Sample:
    line: int
    section: str
    code: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"guide.md:{self.line} {self.section}"


def collect(text: str) -> list[Sample]:
    samples = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip()
        skip = None
        last = before.rsplit("\n", 1)[-1]
        directive = _DIRECTIVE.search(last)
        if directive is not None:
            kind, reason = directive.groups()
            if kind != "skip" or not reason:
                raise ValueError(f"{last!r}: expected '<!-- docs-test: skip REASON -->'")
            skip = reason
        line = text.count("\n", 0, match.start()) + 2
        headings = re.findall(r"^#+ (.+)$", before, re.M)
        section = headings[-1] if headings else "top"
        samples.append(Sample(line, section, textwrap.dedent(match.group(2)), skip))
    return samples


SAMPLES = collect(GUIDE.read_text())


def _is_asyncio_run(node: ast.stmt) -> ast.expr | None:
    """``asyncio.run(X)`` as a statement: return X."""
    if not isinstance(node, ast.Expr) or not isinstance(node.value, ast.Call):
        return None
    func = node.value.func
    if (
        isinstance(func, ast.Attribute)
        and func.attr == "run"
        and isinstance(func.value, ast.Name)
        and func.value.id == "asyncio"
        and len(node.value.args) == 1
    ):
        return node.value.args[0]
    return None


def prepare(code: str) -> ast.Module:
    """Parse a sample; a program's ``asyncio.run(X)`` becomes ``await X``."""
    tree = ast.parse(code)
    for i, node in enumerate(tree.body):
        coro = _is_asyncio_run(node)
        if coro is not None:
            tree.body[i] = ast.copy_location(ast.Expr(ast.Await(coro)), node)
    return ast.fix_missing_locations(tree)


def free_names(tree: ast.Module) -> set[str]:
    """Names a sample reads that it never binds (and that are not builtins)."""
    bound: set[str] = set()
    read: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return read - bound - set(dir(builtins))


# -------------------------------------------------------------- what the prose provides


class Context:
    """The names the guide's prose defines, made only when a sample uses them."""

    def __init__(self, stack: contextlib.AsyncExitStack) -> None:
        self.exit = stack
        self._pair: tuple[Stack, Stack] | None = None
        self._contexts: tuple[ssl.SSLContext, ssl.SSLContext] | None = None

    async def pair(self) -> tuple[Stack, Stack]:
        if self._pair is None:
            a, b = MemoryWire.pair()
            left = Stack(a, address="198.18.0.1/24", seed=1, privileged=True)
            right = Stack(b, address="198.18.0.2/24", seed=2, privileged=True)
            await self.exit.enter_async_context(left)
            await self.exit.enter_async_context(right)
            self._pair = (left, right)
        return self._pair

    async def left(self) -> Stack:
        return (await self.pair())[0]

    async def right(self) -> Stack:
        return (await self.pair())[1]

    async def stack(self) -> Stack:
        return await self.left()

    async def device(self) -> Any:
        return MemoryWire.pair()[0]

    async def sock(self) -> Any:
        left, right = await self.pair()
        listener = right.socket(AF_INET, SOCK_STREAM)
        listener.bind(("", 9))
        listener.listen()
        sock = left.socket(AF_INET, SOCK_STREAM)
        await sock.connect(("198.18.0.2", 9))
        return sock

    async def handle(self) -> Callable[..., Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
            writer.close()

        return handle

    def _tls_contexts(self) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        if self._contexts is None:
            ca = trustme.CA()
            server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("echo.example").configure_cert(server)
            client = ssl.create_default_context()
            ca.configure_trust(client)
            self._contexts = (server, client)
        return self._contexts

    async def server_context(self) -> ssl.SSLContext:
        return self._tls_contexts()[0]

    async def client_context(self) -> ssl.SSLContext:
        return self._tls_contexts()[1]


PROVIDED = {
    name
    for name, member in inspect.getmembers(Context, inspect.iscoroutinefunction)
    if not name.startswith("_") and name != "pair"
}


@contextlib.asynccontextmanager
async def namespace_for(tree: ast.Module) -> AsyncIterator[dict[str, Any]]:
    missing = free_names(tree)
    unknown = missing - PROVIDED
    if unknown:
        pytest.fail(f"the sample uses {sorted(unknown)} without defining or importing them")
    async with contextlib.AsyncExitStack() as exit_stack:
        context = Context(exit_stack)
        namespace: dict[str, Any] = {"__name__": "guide_sample"}
        for name in sorted(missing):
            namespace[name] = await getattr(context, name)()
        yield namespace


def test_every_sample_is_collected() -> None:
    # A fence the regex missed (```py, a typo) would silently escape the test.
    fences = [line for line in GUIDE.read_text().splitlines() if line.lstrip().startswith("```py")]
    assert len(fences) == len(SAMPLES)
    assert SAMPLES, "docs/guide.md has no Python samples"


#: Samples marked ``docs-test: skip`` (with their reason) are not made into tests.
RUNNABLE = [s for s in SAMPLES if s.skip is None]


@pytest.mark.parametrize("sample", RUNNABLE, ids=[s.id for s in RUNNABLE])
async def test_guide_sample_runs(
    sample: Sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    tree = prepare(sample.code)
    code = compile(tree, sample.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    async with asyncio.timeout(30), namespace_for(tree) as namespace:
        before = asyncio.all_tasks()
        result = eval(code, namespace)
        if inspect.iscoroutine(result):
            await result
        # What the sample started (a server's connection handlers) ends on its
        # own once the sample is done, before the stacks go away under it.
        started = asyncio.all_tasks() - before - {asyncio.current_task()}
        if started:
            _, pending = await asyncio.wait(started, timeout=10)
            assert not pending, f"the sample leaves tasks running: {pending}"
