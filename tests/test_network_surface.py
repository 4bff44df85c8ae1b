"""Nothing the project starts listens on a non-loopback address by default.

The listening sockets of a process tree are read from ``/proc/net/{tcp,tcp6,udp,udp6}`` (inode ->
address) and ``/proc/<pid>/fd`` (pid -> socket inodes), for the project's own way of starting a
local Ray instance (``evaluator.ray_evaluator.ensure_ray``) and for a whole ``shufflenas search
--workers 2`` run. Every address must be loopback and the Ray dashboard must be off.
(See docs/reliability.md for what a multi-node Ray cluster exposes and how to secure it.)
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_SPACE_TOML

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")

REPO = Path(__file__).resolve().parents[1]
DASHBOARD_PORT = 8265


def _listening() -> dict[str, tuple[str, str, int]]:
    """socket inode -> (protocol, address, port) for TCP LISTEN and bound UDP sockets."""
    found = {}
    for proto, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6), ("udp", socket.AF_INET),
                          ("udp6", socket.AF_INET6)):
        try:
            lines = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if proto.startswith("tcp") and state != "0A":  # 0A = LISTEN
                continue
            hex_ip, hex_port = local.split(":")
            raw = bytes.fromhex(hex_ip)
            if family == socket.AF_INET:
                ip = socket.inet_ntop(family, raw[::-1])
            else:  # four little-endian 32-bit words
                ip = socket.inet_ntop(family, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
            found[inode] = (proto, ip, int(hex_port, 16))
    return found


def _tree(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo += children.get(pid, [])
    return tree


def sockets_of_tree(root: int) -> list[tuple[int, str, str, str, int]]:
    """(pid, command, protocol, address, port) of every listening socket in ``root``'s process tree."""
    listening = _listening()
    out = []
    for pid in _tree(root):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:100]
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in listening:
                out.append((pid, command, *listening[link[8:-1]]))
    return out


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _check(sockets: list[tuple[int, str, str, str, int]]) -> None:
    exposed = [s for s in sockets if not is_loopback(s[3])]
    assert not exposed, "listening on a non-loopback address:\n" + "\n".join(map(str, exposed))
    assert DASHBOARD_PORT not in {s[4] for s in sockets}, "the Ray dashboard is on"


def test_loopback_helper():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.0.2.2")


RAY_STARTER = """
import os, sys
from evaluator.ray_evaluator import ensure_ray
assert ensure_ray()  # the project's own start of a local instance
import ray

@ray.remote
def pid():
    return os.getpid()

ray.get([pid.remote() for _ in range(2)])  # workers up: they listen too
print("ready", flush=True)
sys.stdin.readline()
ray.shutdown()
"""


def test_local_ray_started_by_the_project_listens_on_loopback_only():
    proc = subprocess.Popen([sys.executable, "-c", RAY_STARTER], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.stderr.read()
        sockets = sockets_of_tree(proc.pid)
    finally:
        proc.communicate("done\n", timeout=120)
    assert len(sockets) >= 3, sockets  # GCS, raylet, workers: the scan does see Ray
    _check(sockets)


def test_search_with_ray_workers_listens_on_loopback_only(tmp_path):
    config = tmp_path / "net.toml"
    config.write_text(f"""
trials = 2
workers = 2
evaluator = "ray"
sampler = "random"
presets = []
targets = ["paper-arm-sd810"]
objectives = ["accuracy", "latency:paper-arm-sd810"]
deploy_input = 32
progress = false
{TINY_SPACE_TOML}
[proxy]
epochs = 1
batch_size = 32
max_train_batches = 40
""")
    env = {**os.environ, "SHUFFLENAS_HOME": str(tmp_path / "home"), "SHUFFLENAS_TRACE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "experiments", "search", "--config", str(config), "--out",
                             str(tmp_path)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stderr is not None
    sockets: list = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if line.startswith("trace: train"):  # Ray is up and a worker is training
            sockets = sockets_of_tree(proc.pid)
            break
    rest = proc.communicate(timeout=300)[1]
    assert proc.returncode == 0, rest
    assert sockets, "the search never reached training"
    _check(sockets)
