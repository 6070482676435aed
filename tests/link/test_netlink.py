"""netlink.py and the namespace helpers: real namespaces and TAPs, plus error mapping."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiostack.link import netlink
from aiostack.testing import netns as nshelp
from aiostack.testing.netns import NetNamespace, TapNamespace, require_tap, unique_name

# ---------------------------------------------------------------- no privileges needed


@pytest.mark.parametrize("name", ["", "x" * 16, "a/b", "a:b", "a b", ".", ".."])
def test_bad_interface_names(name: str) -> None:
    with pytest.raises(ValueError, match=r"^name:"):
        netlink.create_tap(name)


@pytest.mark.parametrize("name", ["", "a/b", ".", ".."])
def test_bad_namespace_names(name: str) -> None:
    with pytest.raises(ValueError, match=r"^netns:"):
        netlink.create_tap("tap0", netns=name)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mac": "01:00:5e:00:00:01"}, "mac"),
        ({"mac": "zz:00:00:00:00:01"}, "mac"),
        ({"mac": b"\x02\x00"}, "mac"),
        ({"mtu": 67}, "mtu"),
        ({"mtu": 70000}, "mtu"),
        ({"address": "198.18.0.1"}, "address"),
        ({"address": "198.18.0.300/24"}, "address"),
        ({"txqueuelen": 0}, "txqueuelen"),
    ],
)
def test_bad_settings_name_the_argument(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        netlink.create_tap("tap0", **kwargs)  # type: ignore[arg-type]


def test_without_privilege_errors_are_eperm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netlink, "_effective_capabilities", lambda: 0)
    with pytest.raises(PermissionError, match="CAP_NET_ADMIN") as info:
        netlink.create_tap("tap0")
    assert info.value.errno == errno.EPERM
    with pytest.raises(PermissionError, match="CAP_SYS_ADMIN"):
        netlink.create_netns(unique_name("aiostk"))
    with pytest.raises(PermissionError, match="CAP_NET_ADMIN"):
        netlink.delete_link("tap0")
    with pytest.raises(PermissionError, match="CAP_NET_ADMIN"):
        netlink.configure_link("tap0", up=True)


def test_net_admin_without_sys_admin_cannot_use_namespaces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(netlink, "_effective_capabilities", lambda: 1 << netlink.CAP_NET_ADMIN)
    monkeypatch.setattr(netlink, "require_tun", lambda: None)
    with pytest.raises(PermissionError, match="CAP_SYS_ADMIN"):
        netlink.create_tap("tap0", netns="somewhere")


def test_missing_tun_device_is_enoent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netlink, "_effective_capabilities", lambda: ~0)
    monkeypatch.setattr(netlink, "TUN_DEVICE", "/nonexistent/net/tun")
    with pytest.raises(FileNotFoundError, match="modprobe tun") as info:
        netlink.create_tap("tap0")
    assert info.value.errno == errno.ENOENT


def test_unique_names_fit_interface_names() -> None:
    names = {unique_name("aiostk") for _ in range(100)}
    assert len(names) == 100
    assert all(len(n) == 15 and n.startswith("aiostk") for n in names)
    with pytest.raises(ValueError, match=r"^prefix:"):
        unique_name("a" * 13)


def test_random_mac_is_unicast_and_local() -> None:
    mac = nshelp.random_mac()
    assert len(mac) == 6 and mac[0] & 1 == 0 and mac[0] & 2 == 2


def test_require_tap_skips_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.delenv(nshelp.REQUIRE_TAP_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        require_tap()


def test_require_tap_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv(nshelp.REQUIRE_TAP_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="AIOSTACK_REQUIRE_TAP=1"):
        require_tap()


def test_require_tap_reports_missing_tun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(netlink, "TUN_DEVICE", "/nonexistent/net/tun")
    monkeypatch.delenv(nshelp.REQUIRE_TAP_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="/nonexistent/net/tun is missing"):
        require_tap()


# ---------------------------------------------------------------- real namespaces


@pytest.fixture
def ns() -> Iterator[NetNamespace]:
    require_tap()
    with NetNamespace() as namespace:
        yield namespace


def netns_inode(path: str) -> str:
    return os.readlink(path)


@pytest.mark.tap
def test_namespace_lifecycle() -> None:
    require_tap()
    name = unique_name("aiostk")
    assert not netlink.netns_exists(name)
    netlink.create_netns(name)
    try:
        assert netlink.netns_exists(name) and name in netlink.list_netns()
        with pytest.raises(FileExistsError, match="already exists"):
            netlink.create_netns(name)
        assert netlink.get_link("lo", netns=name).up  # loopback brought up for us
    finally:
        netlink.delete_netns(name)
    assert not netlink.netns_exists(name)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        netlink.delete_netns(name)


@pytest.mark.tap
def test_run_in_netns_runs_on_a_thread_inside(ns: NetNamespace) -> None:
    here = netns_inode("/proc/thread-self/ns/net")
    inside = netlink.run_in_netns(ns.name, lambda: netns_inode("/proc/thread-self/ns/net"))
    assert inside != here
    assert netns_inode("/proc/thread-self/ns/net") == here  # the caller never moved
    with pytest.raises(ZeroDivisionError):
        netlink.run_in_netns(ns.name, lambda: 1 // 0)


@pytest.mark.tap
def test_missing_namespace_is_enoent_and_is_not_created() -> None:
    require_tap()
    missing = unique_name("aiostk")
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        netlink.create_tap("tap0", netns=missing)
    assert info.value.errno == errno.ENOENT
    with pytest.raises(FileNotFoundError):
        netlink.get_link("lo", netns=missing)
    assert not netlink.netns_exists(missing)


@pytest.mark.tap
def test_create_configure_delete_tap(ns: NetNamespace) -> None:
    link = netlink.create_tap(
        "aiotap0", netns=ns.name, mac="02:00:00:00:00:01", mtu=9000, address="198.18.0.1/24"
    )
    assert link.name == "aiotap0" and link.netns == ns.name
    assert link.mac_str == "02:00:00:00:00:01" and link.mtu == 9000 and link.up
    assert not netlink.link_exists("aiotap0")  # only inside the namespace
    assert netlink.link_exists("aiotap0", netns=ns.name)
    addrs = ns.run("ip", "-o", "-4", "addr", "show", "dev", "aiotap0", check=True).stdout.decode()
    assert "198.18.0.1/24" in addrs
    knob = Path("/proc/sys/net/ipv6/conf/aiotap0/disable_ipv6")
    assert ns.call(knob.read_text).strip() == "1"  # read from inside the namespace

    link = netlink.configure_link("aiotap0", netns=ns.name, mtu=1400, up=False)
    assert link.mtu == 1400 and not link.up

    with pytest.raises(FileExistsError, match="already in use") as info:
        netlink.create_tap("aiotap0", netns=ns.name)
    assert info.value.errno == errno.EEXIST
    with pytest.raises(FileExistsError):
        netlink.create_tap("lo", netns=ns.name)

    netlink.delete_link("aiotap0", netns=ns.name)
    assert not netlink.link_exists("aiotap0", netns=ns.name)
    with pytest.raises(OSError, match="no link named") as gone:
        netlink.delete_link("aiotap0", netns=ns.name)
    assert gone.value.errno == errno.ENODEV
    with pytest.raises(OSError) as missing:
        netlink.get_link("aiotap0", netns=ns.name)
    assert missing.value.errno == errno.ENODEV


@pytest.mark.tap
def test_failed_configuration_removes_the_new_tap(ns: NetNamespace) -> None:
    # 65535 passes our range check, but a TAP's maximum is 65535 - 14: the kernel says EINVAL.
    with pytest.raises(OSError) as info:
        netlink.create_tap("aiotap1", netns=ns.name, mtu=65535)
    assert info.value.errno == errno.EINVAL
    assert not netlink.link_exists("aiotap1", netns=ns.name)


@pytest.mark.tap
def test_move_link_between_namespaces(ns: NetNamespace) -> None:
    with NetNamespace() as other:
        netlink.create_tap("aiomove0", netns=ns.name)
        netlink.move_link("aiomove0", other.name, from_netns=ns.name)
        assert not netlink.link_exists("aiomove0", netns=ns.name)
        moved = netlink.configure_link(
            "aiomove0", netns=other.name, address="198.18.0.1/24", up=True
        )
        assert moved.up
        with pytest.raises(FileNotFoundError):
            netlink.move_link("aiomove0", unique_name("aiostk"), from_netns=other.name)
    assert not netlink.netns_exists(other.name)


@pytest.mark.tap
def test_add_neighbor(ns: NetNamespace) -> None:
    netlink.create_tap("aioneigh0", netns=ns.name, address="198.18.0.1/24")
    netlink.add_neighbor("aioneigh0", "198.18.0.2", "02:00:00:00:00:02", netns=ns.name)
    out = ns.run("ip", "neigh", "show", "dev", "aioneigh0", check=True).stdout.decode()
    assert "198.18.0.2 lladdr 02:00:00:00:00:02 PERMANENT" in out
    with pytest.raises(ValueError, match=r"^ip:"):
        netlink.add_neighbor("aioneigh0", "not-an-ip", "02:00:00:00:00:02", netns=ns.name)


# ---------------------------------------------------------------- helpers


@pytest.mark.tap
def test_namespace_context_cleans_up_on_keyboard_interrupt() -> None:
    require_tap()
    holder: list[str] = []
    with pytest.raises(KeyboardInterrupt), NetNamespace() as namespace:
        holder.append(namespace.name)
        assert netlink.netns_exists(namespace.name)
        raise KeyboardInterrupt
    assert not netlink.netns_exists(holder[0])


@pytest.mark.tap
def test_run_and_socket_inside(ns: NetNamespace) -> None:
    result = ns.run("ip", "-o", "link", "show")
    assert result.returncode == 0 and b"lo" in result.stdout
    assert b"eth" not in result.stdout  # nothing of the host is in there
    with ns.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))  # loopback of the namespace
        port = sock.getsockname()[1]
        sock.settimeout(10)
        probe = ns.run(
            "python3",
            "-c",
            (
                "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                f"s.sendto(b'hi', ('127.0.0.1', {port}))"
            ),
            check=True,
        )
        assert probe.returncode == 0
        assert sock.recvfrom(16)[0] == b"hi"
    with pytest.raises(ValueError, match=r"^argv:"):
        ns.run()


@pytest.mark.tap
async def test_async_helpers() -> None:
    require_tap()
    async with NetNamespace() as namespace:
        result = await namespace.run_async("ip", "-o", "link", "show", "lo", check=True)
        assert b"LOOPBACK" in result.stdout
        failing = await namespace.run_async("ip", "link", "show", "nonexistent0")
        assert failing.returncode != 0
        with pytest.raises(subprocess.TimeoutExpired):
            await namespace.run_async("sleep", "30", timeout=0.2)
        name = namespace.name
    assert not netlink.netns_exists(name)


@pytest.mark.tap
async def test_tap_namespace_spec() -> None:
    require_tap()
    async with TapNamespace(static_neighbor=True, mtu=1400) as spec:
        assert spec.netns.startswith("aiostk") and spec.mtu == 1400
        assert spec.kernel_ip == "198.18.0.1" and spec.stack_ip == "198.18.0.2"
        link = netlink.get_link(spec.name, netns=spec.netns)
        assert link.mac == spec.kernel_mac and link.up
        neigh = (await spec.namespace.run_async("ip", "neigh", check=True)).stdout.decode()
        assert spec.stack_ip in neigh and "PERMANENT" in neigh
        netns_name = spec.netns
    assert not netlink.netns_exists(netns_name)


@pytest.mark.tap
def test_tap_namespace_cleans_up_when_setup_fails() -> None:
    require_tap()
    ctx = TapNamespace(kernel_ip="198.18.0.1", prefixlen=33)
    with pytest.raises(ValueError, match=r"^address:"), ctx:
        pass
    assert not netlink.netns_exists(ctx.netns.name)
