#!/usr/bin/env bash
# bench/peers/build.sh - prepares the peer programs outside the repository
# and prints the directory that holds them.
#
#   PEERS_DIR=$(bench/peers/build.sh)                # caf erlang (B1-B5)
#   PEERS_DIR=$(bench/peers/build.sh raw zmq)        # the B6/B7 baselines
#   PEERS_DIR=$(bench/peers/build.sh caf erlang raw zmq)
#
# caf, erlang: the sources are read from shared/bench-peers (read-only;
# override with WEFT_PEERS_SRC). raw, zmq: from this folder (raw/raw_tcp.c,
# zmq/zmq_bench.c: copies of shared/bench-peers' with self-forking modes
# added). Each is copied, with its timestamp, to WEFT_PEERS_DIR (default
# ${TMPDIR:-/tmp}/weft-bench-peers), where it is built; a binary newer than
# its source is reused. Debian packages that are missing (caf: libcaf-dev
# g++; erlang: erlang-nox; raw: gcc; zmq: libzmq3-dev gcc) are installed
# with apt-get -y (through sudo when not root); present ones are left alone.
# Progress goes to stderr; stdout is only the directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
src=${WEFT_PEERS_SRC:-$repo/../shared/bench-peers}
dir=${WEFT_PEERS_DIR:-${TMPDIR:-/tmp}/weft-bench-peers}

log() { echo "peers: $*" >&2; }

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(caf erlang)
pkgs=()
for w in "${want[@]}"; do
	case $w in
	caf) pkgs+=(libcaf-dev g++) ;;
	erlang) pkgs+=(erlang-nox) ;;
	raw) pkgs+=(gcc) ;;
	zmq) pkgs+=(libzmq3-dev gcc) ;;
	*) log "unknown peer $w (caf erlang raw zmq)"; exit 2 ;;
	esac
done
wants() { case " ${want[*]} " in *" $1 "*) return 0 ;; esac; return 1; }

if wants caf || wants erlang; then
	if [ ! -f "$src/caf/caf_bench.cpp" ] || [ ! -f "$src/erlang/ebench.erl" ]; then
		log "no peer sources in $src (set WEFT_PEERS_SRC)"
		exit 1
	fi
	src=$(cd "$src" && pwd)
fi

# ---- Debian packages, only those that are absent ----
missing=()
for pkg in $(printf '%s\n' "${pkgs[@]}" | sort -u); do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null |
		grep -q 'install ok installed'; then
		missing+=("$pkg")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		if ! command -v sudo >/dev/null; then
			log "missing packages ${missing[*]}, not root and no sudo: install them first"
			exit 1
		fi
		sudo=(sudo DEBIAN_FRONTEND=noninteractive)
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	${sudo[@]+"${sudo[@]}"} apt-get update -qq >&2
	${sudo[@]+"${sudo[@]}"} apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# ---- copy (keeping timestamps) and build what is stale ----
# stale SRC BIN: BIN is missing or older than SRC.
stale() { [ ! -e "$2" ] || [ "$1" -nt "$2" ]; }

if wants caf; then
	mkdir -p "$dir/caf"
	cp -p "$src/caf/caf_bench.cpp" "$dir/caf/"
	if stale "$dir/caf/caf_bench.cpp" "$dir/caf/caf_bench"; then
		log "building caf_bench (g++, about a minute)"
		g++ -O2 -std=c++17 -o "$dir/caf/caf_bench.tmp" "$dir/caf/caf_bench.cpp" \
			-lcaf_io -lcaf_core -lpthread >&2
		mv "$dir/caf/caf_bench.tmp" "$dir/caf/caf_bench"
	fi
fi
if wants erlang; then
	mkdir -p "$dir/erlang"
	cp -p "$src/erlang/ebench.erl" "$dir/erlang/"
	if stale "$dir/erlang/ebench.erl" "$dir/erlang/ebench.beam"; then
		log "building ebench.beam"
		(cd "$dir/erlang" && erlc ebench.erl) >&2
	fi
fi
if wants raw; then
	mkdir -p "$dir/raw"
	cp -p "$here/raw/raw_tcp.c" "$dir/raw/"
	if stale "$dir/raw/raw_tcp.c" "$dir/raw/raw_tcp"; then
		log "building raw_tcp"
		gcc -O2 -Wall -o "$dir/raw/raw_tcp.tmp" "$dir/raw/raw_tcp.c" >&2
		mv "$dir/raw/raw_tcp.tmp" "$dir/raw/raw_tcp"
	fi
fi
if wants zmq; then
	mkdir -p "$dir/zmq"
	cp -p "$here/zmq/zmq_bench.c" "$dir/zmq/"
	if stale "$dir/zmq/zmq_bench.c" "$dir/zmq/zmq_bench"; then
		log "building zmq_bench"
		gcc -O2 -Wall -o "$dir/zmq/zmq_bench.tmp" "$dir/zmq/zmq_bench.c" -lzmq >&2
		mv "$dir/zmq/zmq_bench.tmp" "$dir/zmq/zmq_bench"
	fi
fi
echo "$dir"
