#!/usr/bin/env bash
# bench/peers/run_peer.sh - one run of one peer benchmark; prints its
# bench= line (nothing else on stdout).
#
#   bench/peers/run_peer.sh PEERS_DIR caf|erlang BENCH THREADS
#
# BENCH: pingpong counting threadring big spawn spawn-tight, with the N of
# shared/bench-spec.md. THREADS: CAF scheduler.max-threads (cfg=tK) or
# Erlang +S (cfg=sK). CAF's B5 runs with CAF_MAX_THROUGHPUT=1 (cfg=tK-mt1):
# its spawner then yields after each batch of 1000, as the spec's figures
# were taken; with the default (unlimited) a 2-thread run takes minutes.
# Erlang has no spawn-tight: its spawn program is already one loop of N
# spawns (the VM preempts it), so `erlang spawn-tight` runs that program and
# prints its bench=spawn line. Exit status: the program's, or 124 on timeout
# (WEFT_PEER_TIMEOUT seconds, default 120); stderr goes to WEFT_PEER_LOG
# (default: this process's stderr).
set -uo pipefail

if [ $# -ne 4 ]; then
	echo "usage: $0 PEERS_DIR caf|erlang BENCH THREADS" >&2
	exit 2
fi
dir=$1 peer=$2 bench=$3 t=$4
tmo=${WEFT_PEER_TIMEOUT:-120}
errlog=${WEFT_PEER_LOG:-/dev/stderr}

case $peer in
caf)
	cb=$dir/caf/caf_bench
	case $bench in
	pingpong)    cmd=("$cb" pingpong "$t" 1000000) ;;
	counting)    cmd=("$cb" counting "$t" 5000000) ;;
	threadring)  cmd=("$cb" threadring "$t" 503 5000000) ;;
	big)         cmd=("$cb" big "$t" 1000 1000) ;;
	spawn)       cmd=(env CAF_MAX_THROUGHPUT=1 "$cb" spawn "$t" 1000000 1000) ;;
	spawn-tight) cmd=(env CAF_MAX_THROUGHPUT=1 "$cb" spawn "$t" 1000000 1000000) ;;
	*) echo "run_peer: unknown benchmark $bench" >&2; exit 2 ;;
	esac
	;;
erlang)
	e=(erl -noshell -pa "$dir/erlang" ${ERL_FLAGS:-} +S "$t")
	case $bench in
	pingpong)    cmd=("${e[@]}" -run ebench main pingpong 1000000) ;;
	counting)    cmd=("${e[@]}" -run ebench main counting 5000000) ;;
	threadring)  cmd=("${e[@]}" -run ebench main threadring 503 5000000) ;;
	big)         cmd=("${e[@]}" -run ebench main big 1000 1000) ;;
	spawn|spawn-tight)
	             cmd=("${e[@]}" +P 2000000 -run ebench main spawn 1000000) ;;
	*) echo "run_peer: unknown benchmark $bench" >&2; exit 2 ;;
	esac
	;;
*)
	echo "run_peer: unknown peer $peer (caf, erlang)" >&2
	exit 2
	;;
esac

out=$(timeout "$tmo" "${cmd[@]}" 2>>"$errlog")
rc=$?
grep '^bench=' <<<"$out"
[ $rc -eq 0 ] && grep -q '^bench=' <<<"$out" || exit $(( rc ? rc : 1 ))
