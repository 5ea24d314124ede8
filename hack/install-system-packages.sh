#!/usr/bin/env bash
# Debian packages the test suite needs: Prometheus (server and promtool).
set -euo pipefail
if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
else
  SUDO=
fi
echo "installing Debian packages: prometheus"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
