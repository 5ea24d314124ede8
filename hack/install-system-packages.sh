#!/usr/bin/env bash
# Debian packages the test suite needs, each installed only when its command is missing:
# Prometheus (server and promtool); podman, buildah and mmdebstrap to build the images; and the
# real node's runtime: containerd, runc, the CNI plugins, iptables and conntrack (kube-proxy).
set -euo pipefail
if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
else
  SUDO=
fi
# command → package providing it
declare -A PACKAGE=(
  [prometheus]=prometheus [promtool]=prometheus
  [podman]=podman [buildah]=buildah [mmdebstrap]=mmdebstrap [newuidmap]=uidmap
  [containerd]=containerd [runc]=runc [/usr/lib/cni/bridge]=containernetworking-plugins
  [iptables]=iptables [conntrack]=conntrack
)
missing=()
for cmd in "${!PACKAGE[@]}"; do
  if [[ $cmd == /* ]]; then [[ -x $cmd ]] && continue; else command -v "$cmd" >/dev/null && continue; fi
  [[ " ${missing[*]} " == *" ${PACKAGE[$cmd]} "* ]] || missing+=("${PACKAGE[$cmd]}")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
echo "installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
