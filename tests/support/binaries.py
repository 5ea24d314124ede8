"""Pinned binaries of the test control plane and node, found or built from their Go modules.

Lookup order for each tool: the versioned build cache (``$DREAMBOOTH_TEST_CACHE`` or
``~/.cache/dreambooth-operator/bin``), then ``KUBEBUILDER_ASSETS`` (envtest's convention), then
``PATH`` — either only when the binary reports the pinned version. Missing tools are built
with the Go toolchain; only the first run on a machine pays for it.

The node's own small programs (``pause``, ``fake-gpu-device-plugin``) are built from the Go
module in ``tests/support/nodeparts``; their version is a hash of that source, so an edit
rebuilds them, and they are never taken from outside the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.7.0"
HELM_VERSION = "v3.19.0"
COREDNS_VERSION = "v1.15.0"
KUEUE_VERSION = "v0.17.0"
# MinIO tags releases as RELEASE.<date>, which Go sees only as a pseudo-version.
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"

# Bump when a recipe changes so stale caches are not reused.
CACHE_LAYOUT = "v1"

NODEPARTS = Path(__file__).parent / "nodeparts"


def _source_hash(root: Path) -> str:
    """First 12 hex digits of a sha256 over every file under root (path and content), sorted by path."""
    digest = hashlib.sha256()
    files = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file())
    for relative, path in files:
        digest.update(f"{relative}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()[:12]


NODEPARTS_VERSION = _source_hash(NODEPARTS)


@dataclasses.dataclass(frozen=True)
class Tool:
    name: str
    version: str
    # Substring `<tool> --version`-style output must contain to accept a binary found outside the
    # cache; "" when the tool cannot be found outside the cache (no version flag worth trusting).
    version_marker: str
    version_args: tuple[str, ...]
    recipe: str


CONTROL_PLANE_TOOLS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
# The real node's own (tests/support/node.py); built in the same module so they share its cache.
NODE_TOOLS = ("kubelet", "kube-proxy")
KUBE_TOOLS = (*CONTROL_PLANE_TOOLS, *NODE_TOOLS)
# The pod sandbox's init process and a fake nvidia.com/gpu device plugin: tests/support/nodeparts/cmd/<name>.
LOCAL_TOOLS = ("pause", "fake-gpu-device-plugin")

TOOLS: dict[str, Tool] = {
    **{
        name: Tool(
            name,
            KUBERNETES_VERSION,
            KUBERNETES_VERSION,
            ("version", "--client") if name == "kubectl" else ("--version",),
            "kubernetes",
        )
        for name in KUBE_TOOLS
    },
    "etcd": Tool("etcd", ETCD_VERSION, ETCD_VERSION.lstrip("v"), ("--version",), "etcd"),
    "kwok": Tool("kwok", KWOK_VERSION, KWOK_VERSION, ("--version",), "go-install"),
    "helm": Tool("helm", HELM_VERSION, HELM_VERSION, ("version", "--short"), "go-install"),
    "minio": Tool("minio", MINIO_VERSION, "", (), "go-install"),
    "kueue": Tool("kueue", KUEUE_VERSION, "", (), "go-install"),
    "coredns": Tool("coredns", COREDNS_VERSION, COREDNS_VERSION.lstrip("v"), ("-version",), "coredns"),
    **{name: Tool(name, NODEPARTS_VERSION, "", (), "local") for name in LOCAL_TOOLS},
}

GO_INSTALL_PACKAGES = {
    "kwok": f"sigs.k8s.io/kwok/cmd/kwok@{KWOK_VERSION}",
    "helm": f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}",
    "minio": f"github.com/minio/minio@{MINIO_VERSION}",
    "kueue": f"sigs.k8s.io/kueue/cmd/kueue@{KUEUE_VERSION}",
}


def cache_root() -> Path:
    root = os.environ.get("DREAMBOOTH_TEST_CACHE") or Path.home() / ".cache" / "dreambooth-operator"
    return Path(root) / "bin" / CACHE_LAYOUT


def _log(message: str) -> None:
    print(f"[test-binaries] {message}", file=sys.stderr, flush=True)


def _cached_path(tool: Tool) -> Path:
    return cache_root() / f"{tool.name}-{tool.version}" / tool.name


def _reports_version(path: Path, tool: Tool) -> bool:
    if not tool.version_marker:
        return False
    try:
        out = subprocess.run([str(path), *tool.version_args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return tool.version_marker in out.stdout + out.stderr


def find(name: str) -> Path | None:
    """The pinned binary if it already exists somewhere we trust, else None."""
    tool = TOOLS[name]
    cached = _cached_path(tool)
    if cached.is_file():
        return cached
    candidates = []
    if assets := os.environ.get("KUBEBUILDER_ASSETS"):
        candidates.append(Path(assets) / name)
    if on_path := shutil.which(name):
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and _reports_version(candidate, tool):
            return candidate
    return None


def ensure(names: tuple[str, ...] | list[str] | None = None) -> dict[str, Path]:
    """Paths of the named tools (all by default), building the missing ones."""
    names = list(names or TOOLS)
    found = {name: find(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        _log(f"building {', '.join(missing)} into {cache_root()} (first run on this machine only)")
    if kube_missing := [n for n in missing if TOOLS[n].recipe == "kubernetes"]:
        _build_kubernetes(kube_missing)
    for name in missing:
        recipe = TOOLS[name].recipe
        if recipe == "etcd":
            _build_etcd()
        elif recipe == "coredns":
            _build_coredns()
        elif recipe == "go-install":
            _go_install(name)
        elif recipe == "local":
            _build_local(name)
    result = {name: find(name) for name in names}
    unresolved = [n for n, p in result.items() if p is None]
    if unresolved:
        raise RuntimeError(f"could not build {unresolved}; see the output above")
    return result  # type: ignore[return-value]


def _go_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CGO_ENABLED", "0")
    env["GOFLAGS"] = "-mod=mod -buildvcs=false"
    env["GOWORK"] = "off"
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
    started = time.monotonic()
    _log(f"$ {' '.join(cmd)}")
    subprocess.run(cmd, cwd=cwd, env=env, check=True)
    _log(f"  done in {time.monotonic() - started:.0f}s")


def _install_binary(built: Path, tool: Tool) -> None:
    target = _cached_path(tool)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".partial")
    shutil.copy2(built, tmp)
    tmp.chmod(0o755)
    tmp.rename(target)  # atomic: a half-built binary is never mistaken for a cached one


def _module_gomod(module_at_version: str, workdir: Path) -> str:
    out = subprocess.run(
        ["go", "mod", "download", "-json", module_at_version],
        cwd=workdir, env=_go_env(workdir), capture_output=True, text=True, check=True,
    )
    return Path(json.loads(out.stdout)["GoMod"]).read_text()


def _staging_replacements(kubernetes_gomod: str) -> list[str]:
    """Every `k8s.io/x => ./staging/...` of k8s.io/kubernetes, pointed at its release instead."""
    staging_version = "v0" + KUBERNETES_VERSION[2:]  # v1.36.3 -> v0.36.3
    lines = []
    for line in kubernetes_gomod.splitlines():
        if "=> ./staging/" in line:
            module = line.split("=>")[0].strip()
            lines.append(f"\t{module} => {module} {staging_version}")
    return lines


def _build_kubernetes(names: list[str]) -> None:
    workdir = cache_root() / "src" / f"kubernetes-{KUBERNETES_VERSION}"
    workdir.mkdir(parents=True, exist_ok=True)
    env = _go_env(workdir)
    (workdir / "go.mod").write_text("module dreambooth.dev/test/kubernetes\n\ngo 1.26.0\n")
    gomod = _module_gomod(f"k8s.io/kubernetes@{KUBERNETES_VERSION}", workdir)
    replaces = "\n".join(_staging_replacements(gomod))
    (workdir / "go.mod").write_text(
        "module dreambooth.dev/test/kubernetes\n\ngo 1.26.0\n\n"
        f"require k8s.io/kubernetes {KUBERNETES_VERSION}\n\nreplace (\n{replaces}\n)\n"
    )
    imports = "\n".join(f'\t_ "k8s.io/kubernetes/cmd/{name}"' for name in KUBE_TOOLS)
    (workdir / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
    _run(["go", "mod", "tidy"], workdir, env)
    for index, name in enumerate(names, 1):
        _log(f"kubernetes {KUBERNETES_VERSION}: building {name} ({index}/{len(names)})")
        out = workdir / "out" / name
        ldflags = (
            f"-s -w -X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}"
            f" -X k8s.io/client-go/pkg/version.gitVersion={KUBERNETES_VERSION}"
            " -X k8s.io/component-base/version.gitTreeState=clean"
        )
        _run(["go", "build", "-ldflags", ldflags, "-o", str(out), f"k8s.io/kubernetes/cmd/{name}"],
             workdir, env)
        _install_binary(out, TOOLS[name])


def _build_wrapper(name: str, requirement: str, imports: tuple[str, ...], main: str, what: str = "") -> None:
    """Build ``name`` from a wrapper module that requires ``requirement`` and calls its main."""
    tool = TOOLS[name]
    workdir = cache_root() / "src" / f"{name}-{tool.version}"
    workdir.mkdir(parents=True, exist_ok=True)
    env = _go_env(workdir)
    (workdir / "go.mod").write_text(
        f"module dreambooth.dev/test/{name}\n\ngo 1.26.0\n\nrequire {requirement} {tool.version}\n")
    lines = "".join(f"\t{line}\n" for line in imports)
    (workdir / "main.go").write_text(f"package main\n\nimport (\n{lines})\n\nfunc main() {{ {main} }}\n")
    _run(["go", "mod", "tidy"], workdir, env)
    _log(f"{name} {tool.version}: building{what}")
    out = workdir / "out" / name
    _run(["go", "build", "-ldflags", "-s -w", "-o", str(out), "."], workdir, env)
    _install_binary(out, tool)


def _build_etcd() -> None:
    # etcd's root module carries replace directives, so `go install` refuses it.
    _build_wrapper("etcd", "go.etcd.io/etcd/server/v3", ('"os"', '"go.etcd.io/etcd/server/v3/etcdmain"'),
                   "etcdmain.Main(os.Args)")


# The plugins the test node's Corefile uses (tests/support/node.py): CoreDNS with all of its
# plugins pulls in every cloud SDK and takes minutes longer to build.
COREDNS_PLUGINS = ("bind", "errors", "ready", "kubernetes")


def _build_coredns() -> None:
    plugins = tuple(f'_ "github.com/coredns/coredns/plugin/{name}"' for name in COREDNS_PLUGINS)
    _build_wrapper("coredns", "github.com/coredns/coredns", ('"github.com/coredns/coredns/coremain"', *plugins),
                   "coremain.Run()", f" (plugins: {', '.join(COREDNS_PLUGINS)})")


def _go_install(name: str) -> None:
    tool = TOOLS[name]
    gobin = cache_root() / "src" / f"{name}-{tool.version}" / "gobin"
    gobin.mkdir(parents=True, exist_ok=True)
    env = _go_env(gobin)
    env["GOBIN"] = str(gobin)
    env["GOFLAGS"] = "-buildvcs=false"
    _log(f"{name} {tool.version}: go install")
    _run(["go", "install", "-ldflags", "-s -w", GO_INSTALL_PACKAGES[name]], gobin, env)
    _install_binary(gobin / name, tool)


def _build_local(name: str) -> None:
    tool = TOOLS[name]
    env = _go_env(NODEPARTS)
    env["CGO_ENABLED"] = "0"  # static: pause is PID 1 of a sandbox with nothing else in it
    env["GOFLAGS"] = "-mod=readonly -buildvcs=false"  # go.sum is committed; never rewrite the checkout
    out = cache_root() / "src" / f"{name}-{tool.version}" / name
    _log(f"{name} {tool.version}: building tests/support/nodeparts/cmd/{name}")
    _run(["go", "build", "-ldflags", "-s -w", "-o", str(out), f"./cmd/{name}"], NODEPARTS, env)
    _install_binary(out, tool)


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(TOOLS)
    for name, path in ensure(names).items():
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
