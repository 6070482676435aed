"""Tunables, named and defaulted as Linux's sysctls.

Each field of :class:`Settings` is a sysctl with the ``net.<group>.`` prefix
dropped (``icmp_ratelimit`` is ``net.ipv4.icmp_ratelimit``); :meth:`Settings.get`
and :meth:`Settings.set` take the full sysctl name too, so packetdrill
scripts and users who know Linux can say ``net.ipv4.ip_local_port_range``.
Defaults are Linux 6.x's. Settings are per stack and may change while it
runs; every layer reads them at the moment it needs them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


def _sysctl(group: str, default: Any, **kwargs: Any) -> Any:
    return dataclasses.field(default=default, metadata={"group": group}, **kwargs)


@dataclass(slots=True)
class Settings:
    # --- IPv4 ---
    ip_default_ttl: int = _sysctl("ipv4", 64)
    ip_local_port_range: tuple[int, int] = _sysctl("ipv4", (32768, 60999))
    ip_unprivileged_port_start: int = _sysctl("ipv4", 1024)
    ip_nonlocal_bind: int = _sysctl("ipv4", 0)
    #: Seconds an incomplete datagram waits for its missing fragments.
    ipfrag_time: int = _sysctl("ipv4", 30)
    #: Bytes all incomplete datagrams may hold; beyond it new fragments are dropped.
    ipfrag_high_thresh: int = _sysctl("ipv4", 4 * 1024 * 1024)
    # --- ICMP (net.ipv4.icmp_*) ---
    #: Minimum milliseconds between rate-limited ICMP messages to one peer.
    icmp_ratelimit: int = _sysctl("ipv4", 1000)
    #: ICMP types the per-peer limit applies to, as a bit mask
    #: (unreachable, source quench, time exceeded, parameter problem).
    icmp_ratemask: int = _sysctl("ipv4", 0x1818)
    icmp_msgs_per_sec: int = _sysctl("ipv4", 1000)
    icmp_msgs_burst: int = _sysctl("ipv4", 50)
    icmp_echo_ignore_all: int = _sysctl("ipv4", 0)
    icmp_echo_ignore_broadcasts: int = _sysctl("ipv4", 1)
    #: Groups (low, high) allowed ICMP "ping" sockets; Linux's default (1, 0) allows nobody.
    ping_group_range: tuple[int, int] = _sysctl("ipv4", (1, 0))
    # --- ARP / neighbour (net.ipv4.neigh.default.*), times in milliseconds ---
    base_reachable_time_ms: int = _sysctl("ipv4.neigh.default", 30_000)
    retrans_time_ms: int = _sysctl("ipv4.neigh.default", 1_000)
    delay_first_probe_time: int = _sysctl("ipv4.neigh.default", 5)
    mcast_solicit: int = _sysctl("ipv4.neigh.default", 3)
    ucast_solicit: int = _sysctl("ipv4.neigh.default", 3)
    #: Bytes of packets queued per unresolved neighbour (Linux's unres_qlen_bytes).
    unres_qlen_bytes: int = _sysctl("ipv4.neigh.default", 212_992)
    gc_stale_time: int = _sysctl("ipv4.neigh.default", 60)
    #: Send a gratuitous ARP when an address comes up (Linux: arp_notify).
    arp_notify: int = _sysctl("ipv4.conf.all", 1)
    # --- sockets (net.core.*) ---
    rmem_default: int = _sysctl("core", 212_992)
    rmem_max: int = _sysctl("core", 212_992)
    wmem_default: int = _sysctl("core", 212_992)
    wmem_max: int = _sysctl("core", 212_992)
    somaxconn: int = _sysctl("core", 4096)
    # --- TCP (net.ipv4.tcp_*), Linux 6.x defaults ---
    #: min, default, max receive buffer bytes; the max also picks the window scale.
    tcp_rmem: tuple[int, int, int] = _sysctl("ipv4", (4096, 131072, 6291456))
    #: min, default, max send buffer bytes.
    tcp_wmem: tuple[int, int, int] = _sysctl("ipv4", (4096, 16384, 4194304))
    tcp_timestamps: int = _sysctl("ipv4", 1)
    tcp_sack: int = _sysctl("ipv4", 1)
    tcp_dsack: int = _sysctl("ipv4", 1)
    tcp_window_scaling: int = _sysctl("ipv4", 1)
    tcp_syn_retries: int = _sysctl("ipv4", 6)
    #: SYN retransmissions (active open) spaced by the initial RTO before
    #: exponential backoff starts; they come on top of ``tcp_syn_retries``
    #: (Linux 6.5+, so a silent peer times connect() out after 131 s).
    tcp_syn_linear_timeouts: int = _sysctl("ipv4", 4)
    tcp_synack_retries: int = _sysctl("ipv4", 5)
    tcp_retries2: int = _sysctl("ipv4", 15)
    #: Seconds an orphaned connection lingers in FIN-WAIT-2.
    tcp_fin_timeout: int = _sysctl("ipv4", 60)
    tcp_keepalive_time: int = _sysctl("ipv4", 7200)
    tcp_keepalive_intvl: int = _sysctl("ipv4", 75)
    tcp_keepalive_probes: int = _sysctl("ipv4", 9)
    tcp_syncookies: int = _sysctl("ipv4", 1)
    tcp_abort_on_overflow: int = _sysctl("ipv4", 0)
    tcp_max_syn_backlog: int = _sysctl("ipv4", 4096)
    tcp_slow_start_after_idle: int = _sysctl("ipv4", 1)
    tcp_congestion_control: str = _sysctl("ipv4", "cubic")
    #: Milliseconds between out-of-window answers (challenge ACKs) per socket.
    tcp_invalid_ratelimit: int = _sysctl("ipv4", 500)
    #: Seconds of the windowed minimum-RTT filter.
    tcp_min_rtt_wlen: int = _sysctl("ipv4", 300)
    #: Close TIME-WAIT on an RST (0, Linux's default) or ignore it (RFC 1337).
    tcp_rfc1337: int = _sysctl("ipv4", 0)
    #: Loss detection bits (Linux ``tcp_recovery``): 0x1 RACK-TLP (RFC 8985),
    #: 0x2 static reordering window (no D-SACK adaptation), 0x4 no dupthresh
    #: shortcut (the window stays open even with DupThresh segments SACKed).
    tcp_recovery: int = _sysctl("ipv4", 1)
    #: Tail loss probes: 3 (Linux's default) or 4 enable TLP, other values disable it.
    tcp_early_retrans: int = _sysctl("ipv4", 3)
    #: F-RTO (RFC 5682; Linux ``tcp_frto``): after a retransmission timeout,
    #: the first ACK that advances ``snd_una`` lets new data out instead of
    #: more retransmissions, and an ACK of never-retransmitted data then
    #: proves the timeout spurious and undoes it. Any non-zero value enables
    #: it (Linux's 2 is the SACK-enhanced variant when SACK is in use).
    tcp_frto: int = _sysctl("ipv4", 2)
    #: Initial reordering degree in segments (Linux ``tp->reordering``): the
    #: DupThresh of fast retransmit without RACK, raised when SACKs or
    #: timestamps show reordering.
    tcp_reordering: int = _sysctl("ipv4", 3)
    #: Ceiling of the reordering degree a connection may learn.
    tcp_max_reordering: int = _sysctl("ipv4", 300)
    #: Receive buffer auto-tuning (``tcp_rcv_space_adjust``) unless SO_RCVBUF was set.
    tcp_moderate_rcvbuf: int = _sysctl("ipv4", 1)

    def get(self, name: str) -> Any:
        """Value of a setting by field name or full sysctl name."""
        return getattr(self, self._field(name))

    def set(self, name: str, value: Any) -> None:
        """Change a setting by field name or full sysctl name; ValueError names a bad one."""
        field = self._field(name)
        current = getattr(self, field)
        if isinstance(current, tuple):
            if isinstance(value, str):
                value = tuple(int(part) for part in value.split())
            value = tuple(int(part) for part in value)
            if len(value) != len(current):
                raise ValueError(f"{name}: expected {len(current)} integers, got {value!r}")
        elif isinstance(current, str):
            value = str(value).strip()
        else:
            value = int(value)
        setattr(self, field, value)

    @classmethod
    def sysctl_names(cls) -> dict[str, str]:
        """Field of every full sysctl name: ``{"net.ipv4.icmp_ratelimit": "icmp_ratelimit"}``."""
        return {f"net.{f.metadata['group']}.{f.name}": f.name for f in dataclasses.fields(cls)}

    def _field(self, name: str) -> str:
        if name in _FIELD_NAMES:
            return name
        field = _SYSCTL_NAMES.get(name.replace("/", "."))
        if field is None:
            raise ValueError(f"setting: unknown sysctl {name!r}")
        return field


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Settings))
_SYSCTL_NAMES = Settings.sysctl_names()
