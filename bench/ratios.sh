#!/bin/sh
# bench/ratios.sh - weft's rate over the best peer's, per benchmark and
# thread count, from result lines (best fed with bench/summarize.sh output:
# one line per bench, peer and cfg; with several lines per key the last
# wins).
#
#   bench/summarize.sh results.raw | bench/ratios.sh
#
# Thread count: the number in cfg (weft w1, CAF t1 or t1-mt1, Erlang s1).
# For spawn-tight, Erlang's bench=spawn line stands in (Erlang has no
# separate tight variant: its spawner is one loop of N spawns that the VM
# preempts). Targets are the project's (bench/README.md); "met" compares.
awk '
function threads(cfg) { return match(cfg, /[0-9]+/) ? substr(cfg, RSTART, RLENGTH) + 0 : 0 }
/^bench=/ {
  delete f
  for (i = 1; i <= NF; i++) { p = index($i, "="); if (p) f[substr($i, 1, p - 1)] = substr($i, p + 1) }
  b = f["bench"]; pe = f["peer"]; k = threads(f["cfg"])
  if (pe == "weft") {
    wrate[b, k] = f["rate"] + 0; wcfg[b, k] = f["cfg"]; wrss[b, k] = f["peak_rss_kib"]
    next
  }
  cand[1] = b
  nc = 1
  if (pe == "erlang" && b == "spawn") { cand[2] = "spawn-tight"; nc = 2 }
  for (c = 1; c <= nc; c++) {
    bb = cand[c]
    if (!((bb, k) in prate) || f["rate"] + 0 > prate[bb, k]) {
      prate[bb, k] = f["rate"] + 0
      pname[bb, k] = pe ":" f["cfg"] (bb != b ? "(bench=" b ")" : "")
      prss[bb, k] = f["peak_rss_kib"]
    }
    if (f["peak_rss_kib"] != "" && (!((bb, k) in minrss) || f["peak_rss_kib"] + 0 < minrss[bb, k]))
      minrss[bb, k] = f["peak_rss_kib"] + 0
  }
}
END {
  target["pingpong"] = 3; target["counting"] = 1.5; target["threadring"] = 3
  target["spawn"] = 3
  # Known benchmarks in spec order, then any other.
  nb = split("pingpong counting threadring big spawn spawn-tight", order, " ")
  for (key in wrate) {
    split(key, bk, SUBSEP); known = 0
    # the context benchmarks have no peer: see bench/targets.sh
    if (bk[1] ~ /^(ctx-|portal-)/) continue
    for (j = 1; j <= nb; j++) if (order[j] == bk[1]) known = 1
    if (!known && !(bk[1] in extra)) { extra[bk[1]] = 1; order[++nb] = bk[1] }
  }
  for (j = 1; j <= nb; j++) for (k = 1; k <= 64; k++) {
    b = order[j]
    if (!((b, k) in wrate)) continue
    t = (b in target) ? target[b] : (b == "big" && k == 2 ? 2 : "")
    if (!((b, k) in prate)) {
      printf "ratio bench=%s cfg=%s weft=%.0f best_peer=none\n", b, wcfg[b, k], wrate[b, k]
      continue
    }
    r = prate[b, k] > 0 ? wrate[b, k] / prate[b, k] : 0
    printf "ratio bench=%s cfg=%s weft=%.0f best_peer=%s peer_rate=%.0f ratio=%.2f",
           b, wcfg[b, k], wrate[b, k], pname[b, k], prate[b, k], r
    if (t != "") printf " target=%s met=%s", t, (r >= t ? "yes" : "NO")
    printf "\n"
    if (wrss[b, k] != "" && prss[b, k] != "") {
      printf "rss bench=%s cfg=%s weft_kib=%d best_peer_kib=%d min_peer_kib=%d",
             b, wcfg[b, k], wrss[b, k], prss[b, k], minrss[b, k]
      if (b == "spawn") printf " target=<=best_peer met=%s", (wrss[b, k] + 0 <= prss[b, k] + 0 ? "yes" : "NO")
      printf "\n"
    }
  }
  if ((("big", 1) in wrate) && (("big", 2) in wrate) && wrate["big", 1] > 0) {
    s = wrate["big", 2] / wrate["big", 1]
    printf "scaling bench=big w2/w1=%.2f target=1.6 met=%s\n", s, (s >= 1.6 ? "yes" : "NO")
  }
}' "$@"
