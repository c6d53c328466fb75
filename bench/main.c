/* bench/main.c - weft_bench: B1-B5, B9-B12 and ctx-10k of
 * shared/bench-spec.md, and B6, B7, B9-B12 across two processes.
 *
 *   weft_bench NAME [-w K] [-n N] [-r R] [-a A] [-m M] [-b B]
 *              [-d fwd|rev|both] [-o refuse|allow] [-q Q] [-k sleep|recv]
 *              [-p PORT] [-s BYTES] [-v]
 *
 * NAME: pingpong, counting, threadring, big, spawn, spawn-tight, ctx-stream,
 * ctx-rtt, ctx-open-cancel, portal-run, ctx-10k; across processes (net.c):
 * tcp-rtt, tcp-stream, net-ctx-stream, net-ctx-rtt, net-ctx-open-cancel,
 * net-portal-run; serve-net (their server, by hand); B13 spawn-process
 * (spawn_process.c: actors in child processes). Prints one line
 * "bench=NAME peer=weft cfg=wK n=... secs=... rate=... unit=..." per run
 * (ctx-stream: two runs by default, forward and reverse) and exits 0, or
 * non-zero when a check failed. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

static void
usage(FILE *f)
{
	fputs("usage: weft_bench NAME [-w K] [-n N] [-r R] [-a A] [-m M] "
	      "[-b B]\n"
	      "                  [-d fwd|rev|both] [-o refuse|allow] [-q Q] "
	      "[-k sleep|recv]\n"
	      "                  [-p PORT] [-s BYTES] [-v]\n"
	      "  NAME  pingpong | counting | threadring | big | spawn | "
	      "spawn-tight |\n"
	      "        ctx-stream | ctx-rtt | ctx-open-cancel | portal-run | "
	      "ctx-10k |\n"
	      "        across two processes: tcp-rtt | tcp-stream | "
	      "net-ctx-stream |\n"
	      "        net-ctx-rtt | net-ctx-open-cancel | net-portal-run |\n"
	      "        serve-net (their server by hand: prints port=P, "
	      "serves until\n"
	      "        stdin ends) | spawn-process (B13: child processes)\n"
	      "  -w K  worker threads (default 1)\n"
	      "  -n N  work units: round trips (pingpong, 1000000), "
	      "messages\n"
	      "        (counting, 5000000), token (threadring, 5000000), "
	      "actors\n"
	      "        (spawn, 1000000); big uses -a and -m;\n"
	      "        stream items (ctx-stream, 2000000), round trips "
	      "(ctx-rtt,\n"
	      "        200000), cycles (ctx-open-cancel, 1000000), calls "
	      "(portal-run,\n"
	      "        200000), contexts open at once (ctx-10k, 10000);\n"
	      "        tcp-rtt, net-ctx-rtt, net-portal-run 20000; "
	      "tcp-stream,\n"
	      "        net-ctx-stream 1000000; net-ctx-open-cancel 10000;\n"
	      "        spawn-process: spawns timed to the first result (50)\n"
	      "  -r R  threadring ring size (503); spawn-process: tree runs "
	      "(10)\n"
	      "  -a A  big: actors (1000); spawn-process: children per "
	      "tree (10)\n"
	      "  -m M  big: pongs per actor (1000)\n"
	      "  -b B  spawn: actors per spawner turn (1000)\n"
	      "  -d D  ctx-stream, net-ctx-stream, tcp-stream: fwd (caller "
	      "sends), rev\n"
	      "        (callee sends) or both (default both: two runs, two "
	      "lines;\n"
	      "        tcp-stream: fwd)\n"
	      "  -o O  streams: refuse or allow overruns, both sides (default "
	      "refuse\n"
	      "        in one process, allow across processes)\n"
	      "  -q Q  streams: msg_buffer_size, both sides (default "
	      "weft's 64)\n"
	      "  -k K  ctx-open-cancel, ctx-10k: the callee blocks in sleep "
	      "(weft_sleep,\n"
	      "        default) or recv (weft_stream_recv on its own "
	      "stream)\n"
	      "  -p P  across processes: use the server listening on "
	      "127.0.0.1:P\n"
	      "        (weft_bench serve-net) instead of forking one; "
	      "serve-net:\n"
	      "        the port to listen on (default any)\n"
	      "  -s S  across processes: bytes per stream / echo item, >= 4 "
	      "(64 for\n"
	      "        tcp-*, 4 for net-ctx-*)\n"
	      "  -v    runtime statistics on stderr\n",
	      f);
}

static long
num(const char *s, const char *what)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v <= 0) {
		fprintf(stderr, "weft_bench: %s: not a positive number: %s\n",
		        what, s);
		exit(2);
	}
	return v;
}

int
main(int argc, char **argv)
{
	struct bench_opts o = {.workers = 1, .dir = -1, .overruns = -1};
	const char *name;
	int c;

	if (argc < 2 || argv[1][0] == '-') {
		usage(argc >= 2 && strcmp(argv[1], "-h") == 0 ? stdout
		                                               : stderr);
		return argc >= 2 && strcmp(argv[1], "-h") == 0 ? 0 : 2;
	}
	name = argv[1];
	optind = 2;
	while ((c = getopt(argc, argv, "w:n:r:a:m:b:d:o:q:k:p:s:vh")) != -1) {
		switch (c) {
		case 'w': o.workers = (unsigned)num(optarg, "-w"); break;
		case 'n': o.n = num(optarg, "-n"); break;
		case 'r': o.ring = num(optarg, "-r"); break;
		case 'a': o.actors = num(optarg, "-a"); break;
		case 'm': o.pings = num(optarg, "-m"); break;
		case 'b': o.batch = num(optarg, "-b"); break;
		case 'd':
			if (strcmp(optarg, "both") == 0)
				o.dir = 0;
			else if (strcmp(optarg, "fwd") == 0)
				o.dir = 1;
			else if (strcmp(optarg, "rev") == 0)
				o.dir = 2;
			else {
				fprintf(stderr, "weft_bench: -d: fwd, rev or "
				                "both, not %s\n", optarg);
				return 2;
			}
			break;
		case 'o':
			if (strcmp(optarg, "refuse") == 0)
				o.overruns = 0;
			else if (strcmp(optarg, "allow") == 0)
				o.overruns = 1;
			else {
				fprintf(stderr, "weft_bench: -o: refuse or "
				                "allow, not %s\n", optarg);
				return 2;
			}
			break;
		case 'q': o.bufsize = num(optarg, "-q"); break;
		case 'k':
			if (strcmp(optarg, "sleep") == 0)
				o.block = 0;
			else if (strcmp(optarg, "recv") == 0)
				o.block = 1;
			else {
				fprintf(stderr, "weft_bench: -k: sleep or "
				                "recv, not %s\n", optarg);
				return 2;
			}
			break;
		case 'p':
			o.port = num(optarg, "-p");
			if (o.port > 65535) {
				fprintf(stderr, "weft_bench: -p: not a port: "
				                "%s\n", optarg);
				return 2;
			}
			break;
		case 's':
			o.item_len = num(optarg, "-s");
			if (o.item_len < 4 || o.item_len > (1 << 20)) {
				fprintf(stderr, "weft_bench: -s: 4 to 1048576 "
				                "bytes, not %s\n", optarg);
				return 2;
			}
			break;
		case 'v': o.verbose = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (strcmp(name, "pingpong") == 0)
		return run_pingpong(&o);
	if (strcmp(name, "counting") == 0)
		return run_counting(&o);
	if (strcmp(name, "threadring") == 0)
		return run_threadring(&o);
	if (strcmp(name, "big") == 0)
		return run_big(&o);
	if (strcmp(name, "spawn") == 0)
		return run_spawn(&o, false);
	if (strcmp(name, "spawn-tight") == 0)
		return run_spawn(&o, true);
	if (strcmp(name, "ctx-stream") == 0)
		return run_ctx_stream(&o);
	if (strcmp(name, "ctx-rtt") == 0)
		return run_ctx_rtt(&o);
	if (strcmp(name, "ctx-open-cancel") == 0)
		return run_ctx_open_cancel(&o);
	if (strcmp(name, "portal-run") == 0)
		return run_portal_run(&o);
	if (strcmp(name, "ctx-10k") == 0)
		return run_ctx_10k(&o);
	if (strcmp(name, "tcp-rtt") == 0)
		return run_tcp_rtt(&o);
	if (strcmp(name, "tcp-stream") == 0)
		return run_tcp_stream(&o);
	if (strcmp(name, "net-ctx-stream") == 0)
		return run_net_ctx_stream(&o);
	if (strcmp(name, "net-ctx-rtt") == 0)
		return run_net_ctx_rtt(&o);
	if (strcmp(name, "net-ctx-open-cancel") == 0)
		return run_net_ctx_open_cancel(&o);
	if (strcmp(name, "net-portal-run") == 0)
		return run_net_portal_run(&o);
	if (strcmp(name, "serve-net") == 0)
		return run_serve_net(&o);
	if (strcmp(name, "spawn-process") == 0)
		return run_spawn_process(&o);
	fprintf(stderr, "weft_bench: unknown benchmark %s\n", name);
	usage(stderr);
	return 2;
}
