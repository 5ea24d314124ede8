"""What a real test node changes on this machine, made and undone by the suite.

The node gets an address of its own on an empty bridge (this kernel has no dummy interfaces)
and its pods a bridge (made by the
CNI bridge plugin); nothing else. Pods have routes only to the node, the Service range and
each other, and a FORWARD rule drops anything a pod sends off the bridge, so no packet of a
test leaves the machine. Kernel settings the kubelet or the bridge plugin change are put back.
Only one real node runs on a machine at a time (an exclusive lock), since the kubelet's
device-plugin directory and the interface names are the machine's.
"""

from __future__ import annotations

import fcntl
import ipaddress
import subprocess
from pathlib import Path

from .wait import wait_for

# Private ranges this machine does not use (checked in :meth:`NodeHost.create`).
NODE_ADDRESS = "10.213.0.1"
POD_SUBNET = "10.214.0.0/24"
SERVICE_SUBNET = "10.96.0.0/16"  # the control plane's --service-cluster-ip-range
NODE_INTERFACE = "dbt-node0"
BRIDGE_INTERFACE = "dbt-cni0"
LOCK_PATH = Path("/run/lock/dreambooth-test-node.lock")
# Set by the kubelet (kernel defaults it expects) and by the bridge plugin (forwarding).
SYSCTLS = ("net/ipv4/ip_forward", "vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops",
           "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")
_GUARD = ["FORWARD", "-i", BRIDGE_INTERFACE, "!", "-o", BRIDGE_INTERFACE, "-j", "DROP",
          "-m", "comment", "--comment", "dreambooth-test-node: pods stay on the machine"]


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60)


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = _run("ip", "-4", "-o", "addr", "show").stdout
    ours = (NODE_INTERFACE, BRIDGE_INTERFACE)
    return [ipaddress.ip_interface(line.split()[3]).network for line in out.splitlines()
            if line.split()[1] not in ours]


def unmount_under(*roots: Path) -> None:
    """Lazily unmount everything mounted at or below ``roots`` (containers' root filesystems,
    the kubelet's bind mount of its own directory), innermost first."""
    prefixes = tuple(str(root) for root in roots)

    def mounts() -> list[str]:
        points = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        return [point for point in points if point.startswith(prefixes)]

    for point in reversed(mounts()):
        _run("umount", "-l", point, check=False)
    wait_for(lambda: not mounts(), 30, lambda: f"mounts under {prefixes} gone: {mounts()}")


class NodeHost:
    def __init__(self, lock_timeout: float = 1800) -> None:
        self.lock_timeout = lock_timeout
        self._lock = None
        self._sysctls: dict[str, str] = {}

    def create(self) -> NodeHost:
        self._acquire_lock()
        self.remove_interfaces()  # what a run killed hard left behind
        wanted = [ipaddress.ip_network(n) for n in (f"{NODE_ADDRESS}/32", POD_SUBNET, SERVICE_SUBNET)]
        clash = [(a, b) for a in wanted for b in _used_networks() if a.overlaps(b)]
        if clash:
            raise RuntimeError(f"the test node's ranges are in use on this machine: {clash}")
        self._sysctls = {key: Path("/proc/sys", key).read_text().strip() for key in SYSCTLS}
        _run("ip", "link", "add", NODE_INTERFACE, "type", "bridge")
        _run("ip", "addr", "add", f"{NODE_ADDRESS}/32", "dev", NODE_INTERFACE)
        _run("ip", "link", "set", NODE_INTERFACE, "up")
        _run("iptables", "-I", *_GUARD)
        return self

    def cni_config(self, ipam_dir: Path) -> dict:
        """The pod network: one bridge, no masquerade, no default route."""
        return {
            "cniVersion": "1.0.0",
            "name": "dreambooth-test",
            "plugins": [{
                "type": "bridge",
                "bridge": BRIDGE_INTERFACE,
                "isGateway": True,  # the host's side: kubelet probes and Prometheus reach pods
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_dir),
                    "ranges": [[{"subnet": POD_SUBNET}]],
                    "routes": [{"dst": SERVICE_SUBNET}, {"dst": f"{NODE_ADDRESS}/32"}],
                },
            }],
        }

    def remove_interfaces(self) -> None:
        for interface in (BRIDGE_INTERFACE, NODE_INTERFACE):
            _run("ip", "link", "del", interface, check=False)
        while _run("iptables", "-D", *_GUARD, check=False).returncode == 0:
            pass

    def remove(self) -> None:
        self.remove_interfaces()
        for key, value in self._sysctls.items():
            try:
                Path("/proc/sys", key).write_text(value)
            except OSError:
                pass
        self._sysctls.clear()
        if self._lock:
            self._lock.close()
            self._lock = None

    def _acquire_lock(self) -> None:
        LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
        lock = LOCK_PATH.open("w")

        def locked() -> bool:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False

        try:
            wait_for(locked, self.lock_timeout, f"the real node's lock {LOCK_PATH}, held by another test run",
                     interval=1)
        except BaseException:
            lock.close()
            raise
        self._lock = lock
