"""Counters named after Linux's SNMP MIB (``nstat``/``/proc/net/snmp`` names).

A :class:`Counters` instance is shared by every layer of one stack. Counters
are plain slotted integer attributes because the hot path bumps several per
packet and an attribute increment is the cheapest thing CPython offers.
Drops that the MIB has no name for are kept by reason in :attr:`drops`
(``"ethernet.truncated"``, ``"ipv4.bad_checksum"``...), so every discarded
frame is accounted for somewhere.
"""

from __future__ import annotations

MIB_NAMES: tuple[str, ...] = (
    # IP group (RFC 4293 / Linux Ip: and IpExt:)
    "IpInReceives",
    "IpInHdrErrors",
    "IpInAddrErrors",
    "IpInUnknownProtos",
    "IpInDiscards",
    "IpInDelivers",
    "IpInTruncatedPkts",
    "IpInCsumErrors",
    "IpInBcastPkts",
    "IpOutRequests",
    "IpOutDiscards",
    "IpOutNoRoutes",
    "IpReasmTimeout",
    "IpReasmReqds",
    "IpReasmOKs",
    "IpReasmFails",
    "IpReasmOverlaps",
    "IpFragOKs",
    "IpFragFails",
    "IpFragCreates",
    # ICMP group
    "IcmpInMsgs",
    "IcmpInErrors",
    "IcmpInCsumErrors",
    "IcmpInDestUnreachs",
    "IcmpInTimeExcds",
    "IcmpInParmProbs",
    "IcmpInEchos",
    "IcmpInEchoReps",
    "IcmpOutMsgs",
    "IcmpOutErrors",
    "IcmpOutRateLimitGlobal",
    "IcmpOutRateLimitHost",
    "IcmpOutDestUnreachs",
    "IcmpOutTimeExcds",
    "IcmpOutParmProbs",
    "IcmpOutEchos",
    "IcmpOutEchoReps",
    # UDP group
    "UdpInDatagrams",
    "UdpNoPorts",
    "UdpInErrors",
    "UdpOutDatagrams",
    "UdpRcvbufErrors",
    "UdpSndbufErrors",
    "UdpInCsumErrors",
    # ARP (no MIB in Linux; named in the same style)
    "ArpInRequests",
    "ArpInReplies",
    "ArpOutRequests",
    "ArpOutReplies",
    "ArpResolveFailures",
    "ArpPendingDrops",
    # TCP group (RFC 4022 / Linux Tcp:) and the TcpExt: counters TCP bumps
    "TcpActiveOpens",
    "TcpPassiveOpens",
    "TcpAttemptFails",
    "TcpEstabResets",
    "TcpCurrEstab",
    "TcpInSegs",
    "TcpOutSegs",
    "TcpRetransSegs",
    "TcpInErrs",
    "TcpOutRsts",
    "TcpInCsumErrors",
    "TcpExtListenOverflows",
    "TcpExtListenDrops",
    "TcpExtSyncookiesSent",
    "TcpExtSyncookiesRecv",
    "TcpExtSyncookiesFailed",
    "TcpExtTCPChallengeACK",
    "TcpExtTCPSACKRecovery",
    "TcpExtTCPRenoRecovery",
    "TcpExtTCPTimeouts",
    "TcpExtDelayedACKs",
    "TcpExtPAWSEstab",
    "TcpExtTCPAbortOnClose",
    "TcpExtTCPAbortOnData",
    "TcpExtTCPAbortOnTimeout",
    "TcpExtTCPFastRetrans",
    "TcpExtTCPLossProbes",
    "TcpExtTW",
    "TcpExtTCPKeepAlive",
    "TcpExtTCPLossProbeRecovery",
    "TcpExtTCPDSACKRecv",
    "TcpExtTCPDSACKOfoRecv",
    "TcpExtTCPDSACKOldSent",
    "TcpExtTCPDSACKOfoSent",
    "TcpExtTCPDSACKUndo",
    "TcpExtTCPFullUndo",
    "TcpExtTCPLossUndo",
    "TcpExtTCPSpuriousRTOs",
    "TcpExtTCPPartialUndo",
    "TcpExtTCPSACKReorder",
    "TcpExtTCPTSReorder",
    "TcpExtTCPRenoReorder",
)


class Counters:
    """One stack's MIB counters plus drops by reason; see the module docstring."""

    __slots__ = (*MIB_NAMES, "drops")

    IpInReceives: int
    IpInHdrErrors: int
    IpInAddrErrors: int
    IpInUnknownProtos: int
    IpInDiscards: int
    IpInDelivers: int
    IpInTruncatedPkts: int
    IpInCsumErrors: int
    IpInBcastPkts: int
    IpOutRequests: int
    IpOutDiscards: int
    IpOutNoRoutes: int
    IpReasmTimeout: int
    IpReasmReqds: int
    IpReasmOKs: int
    IpReasmFails: int
    IpReasmOverlaps: int
    IpFragOKs: int
    IpFragFails: int
    IpFragCreates: int
    IcmpInMsgs: int
    IcmpInErrors: int
    IcmpInCsumErrors: int
    IcmpInDestUnreachs: int
    IcmpInTimeExcds: int
    IcmpInParmProbs: int
    IcmpInEchos: int
    IcmpInEchoReps: int
    IcmpOutMsgs: int
    IcmpOutErrors: int
    IcmpOutRateLimitGlobal: int
    IcmpOutRateLimitHost: int
    IcmpOutDestUnreachs: int
    IcmpOutTimeExcds: int
    IcmpOutParmProbs: int
    IcmpOutEchos: int
    IcmpOutEchoReps: int
    UdpInDatagrams: int
    UdpNoPorts: int
    UdpInErrors: int
    UdpOutDatagrams: int
    UdpRcvbufErrors: int
    UdpSndbufErrors: int
    UdpInCsumErrors: int
    ArpInRequests: int
    ArpInReplies: int
    ArpOutRequests: int
    ArpOutReplies: int
    ArpResolveFailures: int
    ArpPendingDrops: int
    TcpActiveOpens: int
    TcpPassiveOpens: int
    TcpAttemptFails: int
    TcpEstabResets: int
    TcpCurrEstab: int
    TcpInSegs: int
    TcpOutSegs: int
    TcpRetransSegs: int
    TcpInErrs: int
    TcpOutRsts: int
    TcpInCsumErrors: int
    TcpExtListenOverflows: int
    TcpExtListenDrops: int
    TcpExtSyncookiesSent: int
    TcpExtSyncookiesRecv: int
    TcpExtSyncookiesFailed: int
    TcpExtTCPChallengeACK: int
    TcpExtTCPSACKRecovery: int
    TcpExtTCPRenoRecovery: int
    TcpExtTCPTimeouts: int
    TcpExtDelayedACKs: int
    TcpExtPAWSEstab: int
    TcpExtTCPAbortOnClose: int
    TcpExtTCPAbortOnData: int
    TcpExtTCPAbortOnTimeout: int
    TcpExtTCPFastRetrans: int
    TcpExtTCPLossProbes: int
    TcpExtTW: int
    TcpExtTCPKeepAlive: int
    TcpExtTCPLossProbeRecovery: int
    TcpExtTCPDSACKRecv: int
    TcpExtTCPDSACKOfoRecv: int
    TcpExtTCPDSACKOldSent: int
    TcpExtTCPDSACKOfoSent: int
    TcpExtTCPDSACKUndo: int
    TcpExtTCPFullUndo: int
    TcpExtTCPLossUndo: int
    TcpExtTCPSpuriousRTOs: int
    TcpExtTCPPartialUndo: int
    TcpExtTCPSACKReorder: int
    TcpExtTCPTSReorder: int
    TcpExtTCPRenoReorder: int
    drops: dict[str, int]

    def __init__(self) -> None:
        for name in MIB_NAMES:
            setattr(self, name, 0)
        self.drops = {}

    def drop(self, reason: str, count: int = 1) -> None:
        """Count a discarded frame or packet under ``reason`` (``layer.why``)."""
        self.drops[reason] = self.drops.get(reason, 0) + count

    def snapshot(self) -> dict[str, int]:
        """Every MIB counter by name (``nstat -a`` style), zeros included."""
        return {name: getattr(self, name) for name in MIB_NAMES}
