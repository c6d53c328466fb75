#!/bin/sh
# bench/targets.sh - the project's targets for weft's context benchmarks
# (bench/README.md), checked on result lines; best fed with
# bench/summarize.sh output (one median line per bench and cfg; with
# several lines per key the last wins).
#
#   bench/summarize.sh results.raw | bench/targets.sh
#
# Prints, per (bench, cfg) that has a target:
#   target bench=ctx-stream cfg=w1 rate=... target=>=10000000 met=NO
#   target bench=ctx-open-cancel cfg=w1 us_per_cycle=... target=<=5 met=yes
#   target bench=ctx-10k cfg=w1 rss_kib=... target=<204800 met=yes
#   target bench=ctx-10k cfg=w1 open_close_secs=... target=<1 met=yes
awk '
/^bench=/ && $0 ~ /peer=weft/ {
  delete f
  for (i = 1; i <= NF; i++) { p = index($i, "="); if (p) f[substr($i, 1, p - 1)] = substr($i, p + 1) }
  b = f["bench"]; k = b " cfg=" f["cfg"]
  if (b == "ctx-stream") {
    line[k] = sprintf("target bench=%s rate=%s target=>=10000000 met=%s", k, f["rate"], (f["rate"] + 0 >= 10000000 ? "yes" : "NO"))
  } else if (b == "ctx-open-cancel") {
    line[k] = sprintf("target bench=%s us_per_cycle=%s target=<=5 met=%s block=%s", k, f["us_per_cycle"], (f["us_per_cycle"] + 0 <= 5 ? "yes" : "NO"), f["block"])
  } else if (b == "ctx-10k") {
    line[k] = sprintf("target bench=%s rss_kib=%s target=<204800 met=%s\ntarget bench=%s open_close_secs=%s target=<1 met=%s", k, f["rss_kib"], (f["rss_kib"] + 0 < 204800 ? "yes" : "NO"), k, f["secs"], (f["secs"] + 0 < 1 ? "yes" : "NO"))
  } else next
  if (!(k in seen)) { seen[k] = 1; order[++n] = k }
}
END { for (i = 1; i <= n; i++) print line[order[i]] }' "$@"
