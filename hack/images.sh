#!/usr/bin/env bash
# `make images`: build the operator and trainer images from their unmodified Dockerfiles with
# podman, offline. The base images the Dockerfiles name (FROM) are made locally from Debian
# packages and tagged with those names; where a registry is reachable, the same Dockerfiles
# build from the upstream bases instead. Stand-in bases are built once (skipped when podman
# already has the tag); podman's layer cache makes a second build of unchanged code quick.
#
#   hack/images.sh [operator|trainer ...]   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/hack/containers.conf}
VERSION=$(sed -n 's/^appVersion: "\(.*\)"/\1/p' charts/dreambooth-operator/Chart.yaml)
OPERATOR_IMAGE=$(sed -n 's/^  repository: \(.*operator\)$/\1/p' charts/dreambooth-operator/values.yaml):$VERSION
TRAINER_IMAGE=$(sed -n 's/^    repository: \(.*trainer\)$/\1/p' charts/dreambooth-operator/values.yaml):$VERSION
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

log() { printf '[images] %s\n' "$*"; }

tools() {
  hack/install-system-packages.sh
}

# A Debian bookworm root with Python 3.11 as `python`, this machine's CA bundle (PyPI is
# reached through its TLS proxy) and pip allowed to install system-wide, as in the upstream
# python and pytorch images.
debian_python_root() {
  mmdebstrap --quiet --variant=minbase \
    --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates,passwd \
    --customize-hook='cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/ca-certificates.crt"' \
    --customize-hook='printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n" > "$1/etc/pip.conf"' \
    --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
    bookworm "$1"
}

# FROM python:3.11.14-slim-bookworm (the operator's build and runtime stages).
python_base() {
  local name=docker.io/library/$1
  podman image exists "$name" && return
  log "stand-in base $name from Debian packages"
  debian_python_root "$WORK/python.tar"
  podman import --quiet --change 'CMD ["python3"]' "$WORK/python.tar" "$name" >/dev/null
}

# FROM pytorch/pytorch:<torch>-cuda…-runtime: Python with that torch (PyPI's CUDA build, from uv's
# cache when .venv was installed on this machine; CUDA itself is only used where a GPU is).
pytorch_base() {
  local name=docker.io/$1 torch=${1#pytorch/pytorch:}
  torch=${torch%%-*}
  podman image exists "$name" && return
  log "stand-in base $name from Debian packages and torch==$torch"
  mkdir "$WORK/pytorch"
  debian_python_root "$WORK/pytorch"
  .venv/bin/uv pip install --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    --target "$WORK/pytorch/usr/local/lib/python3.11/dist-packages" "torch==$torch"
  tar -C "$WORK/pytorch" -cf "$WORK/pytorch.tar" .
  rm -rf "$WORK/pytorch"
  podman import --quiet --change 'CMD ["python3"]' "$WORK/pytorch.tar" "$name" >/dev/null
}

build() {  # dockerfile, tag
  local started=$SECONDS
  log "building $2 from $1"
  podman build --quiet --pull=never --network host -f "$1" -t "$2" . >/dev/null
  log "  $2 in $((SECONDS - started))s, $(podman image inspect --format '{{.Size}}' "$2" | numfmt --to=iec)"
}

# Each image runs its --help as a non-root uid on a read-only root filesystem, as the chart runs it.
check() {  # tag, uid, writable dirs...
  local tag=$1 uid=$2 mounts=() dir
  shift 2
  for dir in "$@"; do mounts+=(--tmpfs "$dir"); done
  podman run --rm --network none --read-only --user "$uid" "${mounts[@]}" "$tag" --help >/dev/null
  log "  $tag --help runs as uid $uid on a read-only root"
}

tools
for what in "${@:-operator trainer}"; do
  for one in $what; do
    case $one in
      operator)
        python_base "$(sed -n 's/^FROM \(python:[^ ]*\).*/\1/p' operator/Dockerfile | head -1)"
        build operator/Dockerfile "$OPERATOR_IMAGE"
        check "$OPERATOR_IMAGE" 65532 /tmp ;;
      trainer)
        pytorch_base "$(sed -n 's/^ARG BASE=\(.*\)/\1/p' trainer-image/Dockerfile)"
        build trainer-image/Dockerfile "$TRAINER_IMAGE"
        check "$TRAINER_IMAGE" 10001 /tmp /home/trainer ;;
      *) echo "unknown image: $one (operator, trainer)" >&2; exit 2 ;;
    esac
  done
done
