"""The timeline: run a parsed script against a :class:`Target`, event by event, as packetdrill does.

Time (``ref/packetdrill-format.md``)
    Script times are microseconds from the start (after the init commands).
    A relative time (``+0.1``) counts from the previous event, as in
    packetdrill: from when the stack sent an outbound packet, or from when
    the runner performed the previous action (an injected packet, a call).
    An outbound packet or a blocking call's return must happen within
    ``--tolerance_usecs`` (default 4000) of its scripted time, or within
    ``--tolerance_percent`` of the time since the previous event if that is
    larger; a range ``a~b`` widens the window to [a, b]; ``*`` accepts any
    time. On real time the runner may itself act late; what the stack does
    is then judged between the ideal schedule and the real one, plus what
    the runner's lateness can do to the stack's timers (see
    :meth:`Timeline.acted`), never against the runner's own delay.

Packets
    ``<`` lines are built and injected at their time; ``>`` lines are
    compared with the stack's packets in the order it sent them (a stray
    packet therefore fails the next ``>`` line, showing both). A line's
    explicit ports pick its connection (:mod:`.flows`), each numbered alone.

System calls
    A call runs at its time. A call without ``...`` must return at once:
    one still running after the tolerance is "blocked" if the target says it
    is waiting (:meth:`Kernel.call_waiting`), not merely unscheduled;
    ``+0...0.2 accept(...)`` runs as a task that the
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
import dataclasses
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
    TcpSegment,
    TimeKind,
    format_usecs,
)
from .errors import PacketdrillSyntaxError
from .flows import Flows
from .packets import (
    Flow,
    LivePacket,
    Unsupported,
    build_inbound,
    format_live,
    match_outbound,
    parse_live,
)
from .parser import parse_file
from .report import Result, ScriptFailure, Status
from .symbols import SYMBOLS, TCP_INFO_SIZE, unpack_tcp_info
from .syscalls import SyscallContext, run_syscall
from .sysctl import parse_command
from .target import Target

__all__ = ["DEFAULT_TOLERANCE_USECS", "Timeline", "run_script_file", "run_target"]

DEFAULT_TOLERANCE_USECS = 4000
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


#: How many times the runner's worst lateness a late stack packet may show: a late
#: injected ACK lengthens an RTT sample by as much, and the first sample sets the
#: RTO to SRTT + 4 RTTVAR = 3 RTT (RFC 6298 2.2), so a timer may move by 3 times.
LATENESS_FACTOR = 3
#: How long a call written to return at once may take while it is not asleep in
#: the kernel (scheduling on a loaded machine), in microseconds.
SCHEDULING_PATIENCE_USECS = 10_000_000
_POLL_USECS = 2_000


@dataclass(frozen=True, slots=True)
class _Bounds:
    """Scripted [start, end] of something the stack does, and the window it may really fall in."""

    start: int
    end: int
    tolerance: int
    earliest: int
    latest: int


@dataclass(slots=True)
class _Pending:
    """A blocking (``...``) system call in flight."""

    event: Event
    call: SyscallEvent
    task: asyncio.Task[None]
    bounds: _Bounds
    #: The runner's worst lateness when the call began (see :meth:`Timeline.since_call`).
    lateness: int


class Timeline:
    """One run of one script on one target."""

    def __init__(self, script: Script, target: Target) -> None:
        self.script = script
        self.target = target
        self.flows = Flows()
        option = script.option("tolerance_usecs")
        self.tolerance = max(
            int(option) if option else DEFAULT_TOLERANCE_USECS, target.min_tolerance_usecs
        )
        percent = script.option("tolerance_percent")
        self.tolerance_percent = float(percent) if percent else 0.0
        tick = script.option("tcp_ts_tick_usecs")
        self.ts_tick = int(tick) if tick else None
        #: Where the next relative time counts from (see :meth:`acted`).
        self.anchor = 0
        #: The same on the script's ideal schedule, and as late as the runner really acted.
        self.early_anchor = 0
        self.late_anchor = 0
        #: The runner's worst lateness so far (0 on virtual time).
        self.max_lateness = 0
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
        self.ctx = SyscallContext(target.kernel, self.flows)
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

    def bounds(self, event: Event, start: int | None, end: int | None) -> _Bounds | None:
        """When something the stack does for ``event`` may happen; None for ``*``.

        The scripted window widened by the tolerance and, on real time, by
        the runner's own lateness (see :meth:`acted`): a relative time may
        count from the ideal schedule (:attr:`early_anchor`) on the early side
        and from what the runner really did (:attr:`late_anchor`) on the late
        side, and the late side also allows :data:`LATENESS_FACTOR` times the
        worst lateness so far, which the stack's timers may have inherited.
        """
        if start is None or end is None:
            return None
        tolerance = self.tolerance_for(start)
        early = late = 0
        if event.time.kind in (TimeKind.RELATIVE, TimeKind.RELATIVE_RANGE):
            early = max(self.anchor - self.early_anchor, 0)
            late = max(self.late_anchor - self.anchor, 0)
        late += LATENESS_FACTOR * self.max_lateness
        return _Bounds(start, end, tolerance, start - early - tolerance, end + late + tolerance)

    def check_time(self, what: str, bounds: _Bounds | None, actual: int) -> None:
        if bounds is None or bounds.earliest <= actual <= bounds.latest:
            return
        start, end = bounds.start, bounds.end
        scripted = (
            format_usecs(start) if start == end else f"{format_usecs(start)}~{format_usecs(end)}"
        )
        widened = ""
        if bounds.earliest != start - bounds.tolerance or bounds.latest != end + bounds.tolerance:
            widened = (
                f"; window {format_usecs(bounds.earliest)}~{format_usecs(bounds.latest)} s "
                "with the runner's own lateness"
            )
        raise ScriptFailure(
            f"timing error: {what} expected at {scripted} s but happened at "
            f"{format_usecs(actual)} s (tolerance {format_usecs(bounds.tolerance)} s{widened})"
        )

    def ideal_start(self, event: Event) -> int | None:
        """When ``event`` is due on the script's ideal schedule (from :attr:`early_anchor`)."""
        if event.time.kind in (TimeKind.RELATIVE, TimeKind.RELATIVE_RANGE):
            return self.early_anchor + event.time.usecs
        return self.window(event)[0]

    def acted(
        self,
        start: int | None,
        ideal: int | None,
        *,
        began: int | None = None,
        ended: int | None = None,
    ) -> None:
        """The runner performed an event scheduled at ``start``, in fact at ``began`` (default now).

        packetdrill counts a relative time from the previous event's actual
        time, and on a loaded machine the runner itself may act late (a
        packet injected, a call made, tens of milliseconds after its time).
        The next events are scheduled from when it really acted
        (:attr:`anchor`), keeping the script's gaps, but the stack's
        response is checked against both schedules: from the scripted time
        (:attr:`early_anchor`, so that packets the stack sent on time before
        a late action are not "early") to the actual one (:attr:`late_anchor`,
        so that packets a late action caused are not "late"). On virtual
        time the runner is never late and the three anchors agree.
        """
        now = self.now_usecs() if began is None else began
        if start is None or ideal is None:
            self.anchor = self.early_anchor = now
        else:
            self.anchor = max(start, now)
            self.early_anchor = min(ideal, start)
            self.max_lateness = max(self.max_lateness, now - start)
        self.late_anchor = max(self.late_anchor, now, ended or 0)

    # -- events -----------------------------------------------------------------

    async def run_event(self, event: Event) -> None:
        body = event.body
        start, end = self.window(event)
        ideal = self.ideal_start(event)
        if isinstance(body, PacketEvent):
            if body.inbound:
                packet = build_inbound(body, self.flow_for(body, outbound=False))
                await self.wait_until(start)
                self.acted(start, ideal)
                self.target.inject(packet)
            else:
                await self.expect_packet(event, body, start, end)
            return
        await self.wait_until(start)
        self.acted(start, ideal)
        if isinstance(body, SyscallEvent):
            await self.run_syscall_event(event, body, start, ideal)
        elif isinstance(body, CommandEvent):
            await self.apply_command(body.command)
        elif isinstance(body, CodeEvent):
            await self.run_code(body.code)

    def flow_for(self, body: PacketEvent, *, outbound: bool) -> Flow:
        """The connection a packet line is about (its explicit ports, else the current one)."""
        if not isinstance(body.packet, TcpSegment):
            raise Unsupported(
                f"{'outbound' if outbound else 'inbound'} {type(body.packet).__name__} packets "
                "(only TCP is supported)"
            )
        return self.flows.for_line(body.packet, outbound=outbound)

    def show_live(self, live: LivePacket, expected: Flow) -> str:
        """A live packet in script numbering: its own connection's, not the line's."""
        own = self.flows.for_live(live)
        shown = format_live(live, own)
        if own is not expected and "(ports" not in shown:
            shown += f" (ports {live.src_port} > {live.dst_port})"
        return shown

    async def wait_until(self, start: int | None) -> None:
        if start is not None:
            await self.target.sleep_until(start / 1_000_000)

    async def expect_packet(
        self, event: Event, body: PacketEvent, start: int | None, end: int | None
    ) -> None:
        target = self.target
        bounds = self.bounds(event, start, end)
        if bounds is None:
            deadline = target.now() + target.any_time_wait
        else:
            deadline = bounds.latest / 1_000_000 + target.late_grace
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
        flow = self.flow_for(body, outbound=True)
        problem = match_outbound(body, live, flow, ts_tick_usecs=self.ts_tick)
        if problem is not None:
            raise ScriptFailure(
                f"outbound packet mismatch: {problem}",
                expected=str(body),
                actual=self.show_live(live, flow),
            )
        actual = round(when * 1_000_000)
        try:
            self.check_time("outbound packet", bounds, actual)
        except ScriptFailure as failure:
            failure.expected = f"{event.time} {body}"
            failure.actual = f"{format_usecs(actual)} {format_live(live, flow)}"
            raise
        self.anchor = self.early_anchor = actual
        self.late_anchor = max(self.late_anchor, actual)

    def _loop_usecs(self, loop_time: float | None) -> int | None:
        """A reading of the loop's clock (from a call's thread) in script microseconds."""
        if loop_time is None:
            return None
        return round(self.target.script_time(loop_time) * 1_000_000)

    async def run_syscall_event(
        self, event: Event, call: SyscallEvent, start: int | None, ideal: int | None
    ) -> None:
        await self.finish_pending()
        self.raise_pending_failure()
        assert self.ctx is not None
        kernel = self.target.kernel
        kernel.last_call_started = kernel.last_call_returned = None
        task = asyncio.ensure_future(run_syscall(call, self.ctx))
        if call.end_usecs is not None:
            end = call.end_usecs
            if event.time.kind in (TimeKind.RELATIVE, TimeKind.RELATIVE_RANGE):
                end += self.anchor - event.time.usecs
            bounds = self.bounds(event, end, end)
            assert bounds is not None
            pending = _Pending(event, call, task, bounds, self.max_lateness)
            task.add_done_callback(lambda t: self._blocking_done(t, pending))
            self.pending = pending
            return
        await self._await_prompt_call(task, call, start)
        task.result()
        began = self._loop_usecs(kernel.last_call_started)
        if began is not None:
            self.acted(start, ideal, began=began, ended=self._loop_usecs(kernel.last_call_returned))

    async def _await_prompt_call(
        self, task: asyncio.Task[None], call: SyscallEvent, start: int | None
    ) -> None:
        """Wait for a call written to return at once; fail it only if it really blocks.

        "Blocked" is the kernel's verdict, not the clock's: past the tolerance
        the runner asks :meth:`Kernel.call_waiting` whether the call is asleep
        waiting for the network, and otherwise (a thread not yet scheduled on
        a loaded machine, a socket() still entering the namespace) keeps
        waiting, for up to :data:`SCHEDULING_PATIENCE_USECS`.
        """
        limit = max(start or 0, self.now_usecs()) + self.tolerance_for(start or 0)
        patience = limit + SCHEDULING_PATIENCE_USECS
        while True:
            timeout = max(limit - self.now_usecs(), 0) / 1_000_000
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if done:
                return
            now = self.now_usecs()
            if now >= patience or self.target.kernel.call_waiting():
                break
            limit = now + _POLL_USECS
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise ScriptFailure(
            f"{call.name}() blocked; the script expects it to return at once "
            "(write a blocking call as 'start...end call(...)')",
            expected=str(call),
        )

    def since_call(self, pending: _Pending) -> _Bounds:
        """A blocking call's return window, late side widened by lateness since it began.

        What unblocks the call (an injected packet) comes after it started,
        and if the runner was late with that, the return is late with it.
        """
        bounds = pending.bounds
        extra = LATENESS_FACTOR * (self.max_lateness - pending.lateness)
        return dataclasses.replace(bounds, latest=bounds.latest + extra)

    def _blocking_done(self, task: asyncio.Task[None], pending: _Pending) -> None:
        if task.cancelled():
            return
        event, call = pending.event, pending.call
        error = task.exception()
        if error is None:
            returned = self._loop_usecs(self.target.kernel.last_call_returned)
            try:
                self.check_time(
                    f"return of {call.name}()",
                    self.since_call(pending),
                    self.now_usecs() if returned is None else returned,
                )
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
        deadline = self.since_call(pending).latest / 1_000_000 + self.target.late_grace
        timeout = max(deadline - self.target.now(), 0)
        done, _ = await asyncio.wait({pending.task}, timeout=timeout)
        self.pending = None
        if not done:
            pending.task.cancel()
            await asyncio.gather(pending.task, return_exceptions=True)
            raise ScriptFailure(
                f"blocking {pending.call.name}() did not return by "
                f"{format_usecs(round(deadline * 1_000_000))} s",
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
