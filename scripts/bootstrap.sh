#!/usr/bin/env bash
# Set up a machine to run aiostack's demo and tests. Idempotent: on a machine
# that is already set up it changes nothing and takes about a second.
#
#   1. Debian packages the tests drive as the kernel-side peer (ip, ping,
#      tcpdump, tshark, nft, iperf3, curl, nc). `apt-get update` runs once and
#      only when a package is missing; without root this step is skipped with
#      a message saying what to install.
#   2. aiostack itself, editable, with the `test` extra, into the interpreter
#      that README's commands call (`python`, else `python3`; override with
#      AIOSTACK_PYTHON=/path/to/python). Skipped when that install is already
#      current (same pyproject.toml, same interpreter, same checkout).
#   3. A report on whether TAP tests can run here (/dev/net/tun and root).
#
# Environment: AIOSTACK_PYTHON (interpreter), AIOSTACK_FORCE_PIP=1 (reinstall).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT=$(pwd -P)

log() { printf 'bootstrap: %s\n' "$*"; }
warn() { printf 'bootstrap: WARNING: %s\n' "$*" >&2; }

# ---------------------------------------------------------------- 1. apt
APT_PACKAGES=(iproute2 iputils-ping tcpdump tshark nftables iperf3 curl netcat-openbsd wrk)
# README's commands say `python`; Debian's python3 package does not provide it.
if ! command -v python >/dev/null 2>&1 && [[ "$(command -v python3 || true)" == /usr/bin/python3 ]]; then
    APT_PACKAGES+=(python-is-python3)
fi

is_installed() {
    dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'
}

if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    warn "no dpkg/apt-get: not a Debian-like system; install the equivalents of" \
         "${APT_PACKAGES[*]} yourself"
else
    missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        log "Debian packages: all present (${APT_PACKAGES[*]})"
    elif ((EUID != 0)); then
        warn "not root, skipping apt; missing Debian packages: ${missing[*]}"
        warn "install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    else
        log "installing Debian packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        # tshark asks whether non-root users may capture; answer "no" up front
        # so the install never waits for a terminal.
        echo 'wireshark-common wireshark-common/install-setuid boolean false' \
            | debconf-set-selections
        apt-get update -q -o Dpkg::Use-Pty=0
        apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}"
        for pkg in "${missing[@]}"; do
            is_installed "$pkg" || { warn "apt did not install $pkg"; exit 1; }
        done
    fi
fi

# ---------------------------------------------------------------- 2. pip
if [[ -n "${AIOSTACK_PYTHON:-}" ]]; then
    PY=$AIOSTACK_PYTHON
elif command -v python >/dev/null 2>&1; then
    PY=python
else
    PY=python3
fi
# An interpreter is its real executable plus its prefix (a venv's python is a
# symlink to the base interpreter's).
py_id() { "$1" -c 'import os, sys; print(sys.prefix + ":" + os.path.realpath(sys.executable))'; }
PY_EXE=$("$PY" -c 'import sys; print(sys.executable)')
PY_ID=$(py_id "$PY")
if [[ "$PY" == python ]] && command -v python3 >/dev/null 2>&1 && [[ "$(py_id python3)" != "$PY_ID" ]]; then
    warn "python ($PY_EXE) and python3 ($(command -v python3)) are different interpreters;" \
         "installing into python, which README's commands use"
fi

# The stamp records which pyproject.toml was installed, for which interpreter
# and which checkout; the install is redone when any of them changes.
stamp_key=$( { cat pyproject.toml; printf '%s\n%s\n' "$PY_ID" "$REPO_ROOT"; } \
             | sha256sum | cut -d' ' -f1)
stamp_dir="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/aiostack"
stamp_file="$stamp_dir/bootstrap-$(printf '%s' "$PY_ID:$REPO_ROOT" | sha256sum | cut -c1-16)"

# Is aiostack installed editable from this checkout with every requirement
# (including the `test` extra) present?
install_is_current() {
    [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp_key" ]] || return 1
    "$PY" - "$REPO_ROOT" <<'PYEOF'
import importlib.metadata as md
import json
import pathlib
import re
import sys

repo = pathlib.Path(sys.argv[1]).resolve()
try:
    dist = md.distribution("aiostack")
    url = json.loads(dist.read_text("direct_url.json") or "{}")
    if not url.get("dir_info", {}).get("editable") or url.get("url") != repo.as_uri():
        sys.exit(1)
    for req in dist.requires or []:
        if "extra ==" in req and not re.search(r"""extra == ['"]test['"]""", req):
            continue
        match = re.match(r"[A-Za-z0-9._-]+", req)
        if match is not None:
            md.version(match.group(0))
except md.PackageNotFoundError:
    sys.exit(1)
PYEOF
}

if [[ "${AIOSTACK_FORCE_PIP:-0}" != 1 ]] && install_is_current; then
    log "python packages: aiostack[test] already installed editable into $PY_EXE"
else
    pip_args=(install --quiet --no-input --disable-pip-version-check --progress-bar off
              --editable '.[test]')
    # Debian's own interpreter refuses pip installs outside a venv (PEP 668).
    # README's commands run the interpreter directly, so install into it.
    if "$PY" -c 'import sys, sysconfig, os; sys.exit(not (sys.prefix == sys.base_prefix and os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))))'; then
        log "$PY_EXE is externally managed (PEP 668); installing with --break-system-packages"
        pip_args+=(--break-system-packages)
    fi
    log "pip installing aiostack[test] (editable) into $PY_EXE"
    PIP_ROOT_USER_ACTION=ignore "$PY" -m pip "${pip_args[@]}"
    mkdir -p "$stamp_dir"
    printf '%s\n' "$stamp_key" >"$stamp_file"
    install_is_current || { warn "aiostack is still not importable from $REPO_ROOT after pip"; exit 1; }
fi

# ---------------------------------------------------------------- 3. TAP
if [[ ! -e /dev/net/tun && $EUID -eq 0 ]]; then
    # Kernel has TUN/TAP but the node is missing (common in minimal images).
    command -v modprobe >/dev/null 2>&1 && modprobe tun 2>/dev/null || true
    if [[ ! -e /dev/net/tun ]]; then
        mkdir -p /dev/net && mknod -m 0666 /dev/net/tun c 10 200 2>/dev/null || true
    fi
fi
if [[ -c /dev/net/tun && $EUID -eq 0 ]]; then
    log "TAP tests: can run (/dev/net/tun present, running as root)"
else
    reasons=()
    [[ -c /dev/net/tun ]] || reasons+=("no /dev/net/tun")
    ((EUID == 0)) || reasons+=("not root")
    warn "TAP tests cannot run here (${reasons[*]}): they skip, or fail when AIOSTACK_REQUIRE_TAP=1"
fi
