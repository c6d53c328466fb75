#!/usr/bin/env bash
# Installs the Debian 12 packages weft needs, only those that are missing.
# Idempotent: when everything is present it installs nothing and needs no
# network. Uses sudo when not root.
set -euo pipefail

PACKAGES=(
  gcc g++ make cmake pkg-config      # toolchain
  libgtest-dev                       # the test suite
  libuv1-dev                         # the transport (libuv)
  libnanopb-dev nanopb protobuf-compiler python3-protobuf  # the wire
)

# tools/deps.sh --fuzz: also what the libFuzzer run needs (clang, and the
# fuzzer runtime, which Debian ships apart from clang).
if [ "${1:-}" = "--fuzz" ]; then
  PACKAGES+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "weft: installing missing packages: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
