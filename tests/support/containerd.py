"""containerd (Debian's 1.6) with runc, for the test node's kubelet; images come from podman.

Its root (content and unpacked snapshots) is cached outside the repository, so the
multi-gigabyte trainer image is imported once per build of it, not once per run; its state,
socket and CNI configuration belong to the run. No registry: `podman save | ctr import`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from .node_host import unmount_under
from .processes import Process

NAMESPACE = "k8s.io"  # the CRI plugin's
# The podman image ID an imported image was made from, so a rebuilt image is imported again.
SOURCE_LABEL = "dreambooth.dev/podman-image-id"


def cache_dir() -> Path:
    root = os.environ.get("DREAMBOOTH_TEST_CACHE") or Path.home() / ".cache" / "dreambooth-operator"
    return Path(root) / "containerd" / "v1"


def _toml(value) -> str:
    return json.dumps(value)  # a JSON string or list is a TOML one


class Containerd:
    def __init__(self, workdir: Path, cni_config: dict, sandbox_image: str) -> None:
        self.workdir = workdir
        self.root = cache_dir()
        self.state = workdir / "state"
        self.socket = workdir / "containerd.sock"
        self.cni_dir = workdir / "net.d"
        self.cni_config = cni_config
        self.sandbox_image = sandbox_image
        self.process: Process | None = None

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> Containerd:
        for path in (self.workdir / "logs", self.state, self.cni_dir, self.root):
            path.mkdir(parents=True, exist_ok=True)
        (self.cni_dir / "10-dreambooth-test.conflist").write_text(json.dumps(self.cni_config))
        config = self.workdir / "config.toml"
        config.write_text(self._config())
        self.process = Process("containerd", [shutil.which("containerd") or "/usr/bin/containerd",
                                              "--config", str(config), "--log-level", "warn"],
                               self.workdir / "logs")
        self.process.wait_until(lambda: self.ctr("version", check=False).returncode == 0, 60,
                                f"containerd answering on {self.socket}")
        return self

    def _config(self) -> str:
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        runc = shutil.which("runc") or "/usr/sbin/runc"
        return "\n".join([
            "version = 2",
            f"root = {_toml(str(self.root))}",
            f"state = {_toml(str(self.state))}",
            'disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",'
            ' "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]',
            f"[grpc]\naddress = {_toml(str(self.socket))}",
            f"[ttrpc]\naddress = {_toml(str(self.socket) + '.ttrpc')}",
            f'[plugins."io.containerd.internal.v1.opt"]\npath = {_toml(str(self.workdir / "opt"))}',
            f"[{cri}]",
            f"sandbox_image = {_toml(self.sandbox_image)}",
            # A negative oom_score_adj needs CAP_SYS_RESOURCE, which this machine withholds.
            "restrict_oom_score_adj = true",
            f"[{cri}.containerd]\nsnapshotter = \"overlayfs\"\ndefault_runtime_name = \"runc\"",
            f'[{cri}.containerd.runtimes.runc]\nruntime_type = "io.containerd.runc.v2"',
            f"[{cri}.containerd.runtimes.runc.options]\nSystemdCgroup = false\nBinaryName = {_toml(runc)}",
            f"[{cri}.cni]\nbin_dir = \"/usr/lib/cni\"\nconf_dir = {_toml(str(self.cni_dir))}",
            "",
        ])

    def ctr(self, *args: str, check: bool = True, stdin=None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["ctr", "--address", str(self.socket), "-n", NAMESPACE, *args],
                              capture_output=True, text=stdin is None, check=check, stdin=stdin, timeout=timeout)

    def load_image(self, name: str) -> None:
        """Import podman's image ``name`` unless the same build is already here."""
        podman_id = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", name],
                                   capture_output=True, text=True, check=True).stdout.strip()
        listed = self.ctr("images", "ls", f"name=={name}", check=False).stdout
        if f"{SOURCE_LABEL}={podman_id}" in listed:
            return
        print(f"[node] importing {name} into containerd", flush=True)
        save = subprocess.Popen(["podman", "save", name], stdout=subprocess.PIPE)
        try:
            self.ctr("images", "import", "-", stdin=save.stdout, timeout=1800)
        finally:
            save.stdout.close()
            if save.wait() != 0:
                raise RuntimeError(f"podman save {name} failed with code {save.returncode}")
        self.ctr("images", "label", name, f"{SOURCE_LABEL}={podman_id}")

    def stop(self) -> None:
        """Kill every container left (the kubelet has stopped its pods by now), then containerd."""
        if self.process is None:
            return
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
            self.ctr("tasks", "rm", "-f", task, check=False)
        self.process.stop()
        self.process = None
        self._kill_shims()
        unmount_under(self.state, self.root, self.workdir)

    def _kill_shims(self) -> None:
        """Shims outlive containerd by design; ours name its socket on their command line."""
        marker = str(self.socket).encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if marker in (proc / "cmdline").read_bytes():
                    os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
