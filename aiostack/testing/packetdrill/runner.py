"""The timeline: run a parsed script against a :class:`Target`, event by event, as packetdrill does.

Time (``ref/packetdrill-format.md``)
    Script times are microseconds from the start (after the init commands).
    A relative time (``+0.1``) counts from the previous event's time: the
    moment an outbound packet was seen, otherwise the scripted time of the
    previous event (for a blocking call, its start), or the moment we really
    performed it if that was later (only on real time, on a loaded machine).
    An outbound packet or a blocking call's return must happen within
    ``--tolerance_usecs`` (default 4000) of its scripted time, or within
    ``--tolerance_percent`` of the time since the previous event if that is
    larger; a range ``a~b`` widens the window to [a, b]; ``*``
    accepts any time.

Packets
    ``<`` lines are built and injected at their time; ``>`` lines are
    compared with the stack's packets in the order it sent them (a stray
    packet therefore fails the next ``>`` line, showing both).

System calls
    A call runs at its time. A call without ``...`` must return at once
    (within the tolerance); ``+0...0.2 accept(...)`` runs as a task that the
    script does not wait for, whose return time and result are checked when
    it returns; the next system call waits for it, as packetdrill's single
    system call thread does.

Failure
    The first event that does not happen as scripted ends the run with a
    :class:`~aiostack.testing.packetdrill.report.ScriptFailure` naming the
    line; anything the runner cannot do ends it as unsupported; any other
    exception is caught and reported as an internal error, so one script
    never takes the others down.
"""

from __future__ import annotations

import asyncio
import builtins
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .ast import (
    CodeEvent,
    CommandEvent,
    Event,
    PacketEvent,
    Script,
    SyscallEvent,
    TimeKind,
    format_usecs,
)
from .errors import PacketdrillSyntaxError
from .packets import Flow, Unsupported, build_inbound, format_live, match_outbound, parse_live
from .parser import parse_file
from .report import Result, ScriptFailure, Status
from .symbols import SYMBOLS, TCP_INFO_SIZE, unpack_tcp_info
from .syscalls import SyscallContext, run_syscall
from .sysctl import parse_command
from .target import Target

__all__ = ["DEFAULT_TOLERANCE_USECS", "Timeline", "run_script_file", "run_target"]

DEFAULT_TOLERANCE_USECS = 4000
#: The script side's port when the stack listens (packetdrill picks an ephemeral one).
REMOTE_PORT = 48_321
_SUPPORTED_OPTIONS = {
    "tolerance_usecs",
    "tolerance_percent",
    "tcp_ts_tick_usecs",
    "define",
    "verbose",
}
#: Options accepted when they say what the runner does anyway (packetdrill's defaults).
_DEFAULT_OPTIONS = {
    "ip_version": "ipv4",
    "mtu": "1500",
    "local_ip": "192.168.0.1",
    "remote_ip": "192.0.2.1",
    "gateway_ip": "192.168.0.2",
    "bind_port": "8080",
    "connect_port": "8080",
}


@dataclass(slots=True)
class _Pending:
    """A blocking (``...``) system call in flight."""

    event: Event
    call: SyscallEvent
    task: asyncio.Task[None]
    deadline: float


class Timeline:
    """One run of one script on one target."""

    def __init__(self, script: Script, target: Target) -> None:
        self.script = script
        self.target = target
        self.flow = Flow()
        self.flow.remote_port = REMOTE_PORT
        option = script.option("tolerance_usecs")
        self.tolerance = max(
            int(option) if option else DEFAULT_TOLERANCE_USECS, target.min_tolerance_usecs
        )
        percent = script.option("tolerance_percent")
        self.tolerance_percent = float(percent) if percent else 0.0
        tick = script.option("tcp_ts_tick_usecs")
        self.ts_tick = int(tick) if tick else None
        self.anchor = 0
        self.pending: _Pending | None = None
        self.failure: BaseException | None = None
        self.ctx: SyscallContext | None = None

    def check_options(self) -> None:
        for option in self.script.options:
            if option.name in _SUPPORTED_OPTIONS:
                continue
            if _DEFAULT_OPTIONS.get(option.name, "") != option.value:
                what = " (IPv4 only)" if option.name == "ip_version" else ""
                raise Unsupported(f"option {option}{what}")

    async def run(self) -> None:
        self.check_options()
        target = self.target
        await target.open()
        self.ctx = SyscallContext(target.kernel, self.flow, REMOTE_PORT)
        for command in self.script.init_commands:
            await self.apply_command(command.text)
        target.reset_clock()
        for event in self.script.events:
            self.raise_pending_failure()
            try:
                await self.run_event(event)
            except ScriptFailure as failure:
                if not failure.line:
                    failure.line = event.line
                raise
        await self.finish_pending()
        self.raise_pending_failure()
        if self.script.cleanup_command is not None:
            # A fresh stack (or namespace) per script leaves nothing to restore.
            target.notes.append(f"cleanup command {self.script.cleanup_command} not run")

    # -- time -----------------------------------------------------------------

    def window(self, event: Event) -> tuple[int | None, int | None]:
        """Scripted (start, end) in microseconds; (None, None) for ``*``."""
        spec = event.time
        kind = spec.kind
        if kind is TimeKind.ANY:
            return None, None
        if kind is TimeKind.ABSOLUTE:
            return spec.usecs, spec.usecs
        if kind is TimeKind.RELATIVE:
            start = self.anchor + spec.usecs
            return start, start
        end = spec.end_usecs if spec.end_usecs is not None else spec.usecs
        if kind is TimeKind.ABSOLUTE_RANGE:
            return spec.usecs, end
        return self.anchor + spec.usecs, self.anchor + end

    def tolerance_for(self, start: int) -> int:
        interval = max(start - self.anchor, 0)
        return max(self.tolerance, int(interval * self.tolerance_percent / 100))

    def now_usecs(self) -> int:
        return round(self.target.now() * 1_000_000)

    def check_time(self, what: str, start: int | None, end: int | None, actual: int) -> None:
        if start is None or end is None:
            return
        tolerance = self.tolerance_for(start)
        if start - tolerance <= actual <= end + tolerance:
            return
        scripted = (
            format_usecs(start) if start == end else f"{format_usecs(start)}~{format_usecs(end)}"
        )
        raise ScriptFailure(
            f"timing error: {what} expected at {scripted} s but happened at "
            f"{format_usecs(actual)} s (tolerance {format_usecs(tolerance)} s)"
        )

    # -- events -----------------------------------------------------------------

    async def run_event(self, event: Event) -> None:
        body = event.body
        start, end = self.window(event)
        if isinstance(body, PacketEvent):
            if body.inbound:
                await self.wait_until(start)
                self.anchor = self.started(start)
                self.target.inject(build_inbound(body, self.flow))
            else:
                await self.expect_packet(event, body, start, end)
            return
        await self.wait_until(start)
        self.anchor = self.started(start)
        if isinstance(body, SyscallEvent):
            await self.run_syscall_event(event, body, start)
        elif isinstance(body, CommandEvent):
            await self.apply_command(body.command)
        elif isinstance(body, CodeEvent):
            await self.run_code(body.code)

    def started(self, start: int | None) -> int:
        """The anchor an event we perform leaves: its scripted time, or now if we are late.

        On virtual time the two are equal. On real time a loaded machine may
        run our action late, and the stack's answer is then late by as much;
        counting from when we really acted keeps that from failing the script.
        """
        now = self.now_usecs()
        return now if start is None else max(start, now)

    async def wait_until(self, start: int | None) -> None:
        if start is not None:
            await self.target.sleep_until(start / 1_000_000)

    async def expect_packet(
        self, event: Event, body: PacketEvent, start: int | None, end: int | None
    ) -> None:
        target = self.target
        if end is None:
            deadline = target.now() + target.any_time_wait
        else:
            deadline = (end + self.tolerance_for(start or 0)) / 1_000_000 + target.late_grace
        while True:
            got = await target.receive(deadline)
            if got is None:
                raise ScriptFailure(
                    "timed out waiting for an outbound packet",
                    expected=str(body),
                    actual="(no packet)",
                )
            when, raw = got
            live = parse_live(raw)
            if live is not None:
                break
        # A mismatch learns nothing, so the live packet is shown in the mappings so far.
        problem = match_outbound(body, live, self.flow, ts_tick_usecs=self.ts_tick)
        if problem is not None:
            raise ScriptFailure(
                f"outbound packet mismatch: {problem}",
                expected=str(body),
                actual=format_live(live, self.flow),
            )
        actual = round(when * 1_000_000)
        try:
            self.check_time("outbound packet", start, end, actual)
        except ScriptFailure as failure:
            failure.expected = f"{event.time} {body}"
            failure.actual = f"{format_usecs(actual)} {format_live(live, self.flow)}"
            raise
        self.anchor = actual

    async def run_syscall_event(self, event: Event, call: SyscallEvent, start: int | None) -> None:
        await self.finish_pending()
        self.raise_pending_failure()
        assert self.ctx is not None
        task = asyncio.ensure_future(run_syscall(call, self.ctx))
        if call.end_usecs is not None:
            end = call.end_usecs
            if event.time.kind in (TimeKind.RELATIVE, TimeKind.RELATIVE_RANGE):
                end += self.anchor - event.time.usecs
            tolerance = self.tolerance_for(start or 0)
            deadline = (end + tolerance) / 1_000_000 + self.target.late_grace
            task.add_done_callback(lambda t: self._blocking_done(t, event, call, start, end))
            self.pending = _Pending(event, call, task, deadline)
            return
        # Measured from when the call really started: a late start is not a block.
        limit = max(start or 0, self.now_usecs()) + self.tolerance_for(start or 0)
        done, _ = await asyncio.wait({task}, timeout=limit / 1_000_000 - self.target.now())
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise ScriptFailure(
                f"{call.name}() blocked; the script expects it to return at once "
                "(write a blocking call as 'start...end call(...)')",
                expected=str(call),
            )
        task.result()
        began = self.target.kernel.last_call_started
        if began is not None:
            self.anchor = max(self.anchor, round(self.target.script_time(began) * 1_000_000))

    def _blocking_done(
        self,
        task: asyncio.Task[None],
        event: Event,
        call: SyscallEvent,
        start: int | None,
        end: int,
    ) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            try:
                self.check_time(f"return of {call.name}()", end, end, self.now_usecs())
            except ScriptFailure as failure:
                error = failure
        if isinstance(error, ScriptFailure) and not error.line:
            error.line = event.line
        if error is not None and self.failure is None:
            self.failure = error

    async def finish_pending(self) -> None:
        pending = self.pending
        if pending is None:
            return
        timeout = max(pending.deadline - self.target.now(), 0)
        done, _ = await asyncio.wait({pending.task}, timeout=timeout)
        self.pending = None
        if not done:
            pending.task.cancel()
            await asyncio.gather(pending.task, return_exceptions=True)
            raise ScriptFailure(
                f"blocking {pending.call.name}() did not return by "
                f"{format_usecs(round(pending.deadline * 1_000_000))} s",
                line=pending.event.line,
                expected=str(pending.call),
            )

    def raise_pending_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    async def apply_command(self, text: str) -> None:
        for name, value in parse_command(text):
            await self.target.sysctl(name, value)

    async def run_code(self, code: str) -> None:
        assert self.ctx is not None
        scope: dict[str, object] = dict(self.ctx.tcp_info)
        fd = self.ctx.socket_under_test
        if fd is not None:
            try:
                raw = await self.ctx.kernel.getsockopt(
                    fd, SYMBOLS["IPPROTO_TCP"], SYMBOLS["TCP_INFO"], TCP_INFO_SIZE
                )
                scope.update(unpack_tcp_info(raw))
            except OSError:
                pass
        try:
            exec(compile(code, "<%{ }%>", "exec"), {"__builtins__": builtins}, scope)
        except AssertionError as exc:
            shown = {k: v for k, v in scope.items() if k.startswith("tcpi_") and k in code}
            raise ScriptFailure(
                f"assertion failed in %{{ }}% block: {str(exc) or code.strip()} {shown}"
            ) from None
        except Exception as exc:
            raise ScriptFailure(f"%{{ }}% block raised {type(exc).__name__}: {exc}") from None


async def run_target(script: Script, target: Target) -> Result:
    """Run ``script`` on ``target``; always returns a Result and always closes the target."""
    started = time.monotonic()
    result = Result(script.path, target.name, Status.PASS)
    timeline = Timeline(script, target)
    try:
        await timeline.run()
    except ScriptFailure as failure:
        result.status = Status.FAIL
        result.message = failure.message
        result.line = failure.line
        result.expected = failure.expected
        result.actual = failure.actual
    except Unsupported as exc:
        result.status = Status.SKIP
        result.message = f"unsupported: {exc}"
    except Exception as exc:  # the runner never crashes: report and go on
        result.status = Status.FAIL
        result.message = f"internal error: {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    finally:
        pending = timeline.pending
        if pending is not None and not pending.task.done():
            pending.task.cancel()
            await asyncio.gather(pending.task, return_exceptions=True)
        try:
            await target.aclose()
        except Exception as exc:
            result.notes.append(f"closing the target failed: {type(exc).__name__}: {exc}")
    result.notes += getattr(target, "notes", [])
    result.seconds = time.monotonic() - started
    return result


def run_script_file(path: str | Path, target: str = "aiostack") -> Result:
    """Parse and run one script file in this process; the CLI calls this in worker processes."""
    try:
        script = parse_file(path)
    except PacketdrillSyntaxError as exc:
        return Result(str(path), target, Status.FAIL, f"syntax error: {exc}", line=exc.line)
    except OSError as exc:
        return Result(str(path), target, Status.FAIL, f"cannot read the script: {exc}")
    try:
        return _runner(target)(script)
    except Unsupported as exc:  # the target itself cannot run here (no root for linux)
        return Result(str(path), target, Status.SKIP, f"unsupported: {exc}")
    except Exception as exc:
        return Result(
            str(path), target, Status.FAIL, f"internal error: {type(exc).__name__}: {exc}"
        )


def _runner(target: str) -> Callable[[Script], Result]:
    if target == "aiostack":
        from .aiostack_target import run_on_aiostack

        return run_on_aiostack
    if target == "linux":
        from .linux import run_on_linux

        return run_on_linux
    raise ValueError(f"target: {target!r} is not aiostack or linux")
