#!/usr/bin/env bash
# bench/peers/build.sh - prepares the CAF and Erlang peer programs (B1-B5)
# outside the repository and prints the directory that holds them.
#
#   PEERS_DIR=$(bench/peers/build.sh)
#
# The sources are read from shared/bench-peers (read-only; override with
# WEFT_PEERS_SRC) and copied, with their timestamps, to WEFT_PEERS_DIR
# (default ${TMPDIR:-/tmp}/weft-bench-peers), where they are built; a binary
# newer than its source is reused. Debian packages that are missing
# (libcaf-dev g++ erlang-nox) are installed with apt-get; present ones are
# left alone. Progress goes to stderr; stdout is only the directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
src=${WEFT_PEERS_SRC:-$repo/../shared/bench-peers}
dir=${WEFT_PEERS_DIR:-${TMPDIR:-/tmp}/weft-bench-peers}

log() { echo "peers: $*" >&2; }

if [ ! -f "$src/caf/caf_bench.cpp" ] || [ ! -f "$src/erlang/ebench.erl" ]; then
	log "no peer sources in $src (set WEFT_PEERS_SRC)"
	exit 1
fi
src=$(cd "$src" && pwd)

# ---- Debian packages, only those that are absent ----
missing=()
for pkg in libcaf-dev g++ erlang-nox; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null |
		grep -q 'install ok installed'; then
		missing+=("$pkg")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		log "missing packages ${missing[*]} and not root: install them first"
		exit 1
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# ---- copy (keeping timestamps) and build what is stale ----
mkdir -p "$dir/caf" "$dir/erlang"
cp -p "$src/caf/caf_bench.cpp" "$dir/caf/"
cp -p "$src/erlang/ebench.erl" "$dir/erlang/"

if [ ! -x "$dir/caf/caf_bench" ] || [ "$dir/caf/caf_bench.cpp" -nt "$dir/caf/caf_bench" ]; then
	log "building caf_bench (g++, about a minute)"
	g++ -O2 -std=c++17 -o "$dir/caf/caf_bench.tmp" "$dir/caf/caf_bench.cpp" \
		-lcaf_io -lcaf_core -lpthread >&2
	mv "$dir/caf/caf_bench.tmp" "$dir/caf/caf_bench"
fi
if [ ! -f "$dir/erlang/ebench.beam" ] || [ "$dir/erlang/ebench.erl" -nt "$dir/erlang/ebench.beam" ]; then
	log "building ebench.beam"
	(cd "$dir/erlang" && erlc ebench.erl) >&2
fi
echo "$dir"
