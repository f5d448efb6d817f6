#!/usr/bin/env bash
# The rollback check many teams start with, as a reference for the detector:
# after each deploy, the service's error rate (status >= 500) over the first
# five minutes; above 5 % -> rollback, otherwise confirmed.
#
# usage: threshold_rollback.sh EVENTS.jsonl [WINDOW_S] [THRESHOLD]
# prints one JSON verdict per deploy, like the detector's.
set -euo pipefail
events="${1:?usage: threshold_rollback.sh EVENTS.jsonl [WINDOW_S] [THRESHOLD]}"
window_s="${2:-300}"
threshold="${3:-0.05}"

awk -v window_s="$window_s" -v threshold="$threshold" '
function field(name,   re, s) {
    re = "\"" name "\":(\"[^\"]*\"|[-0-9.eE+]+)"
    if (!match($0, re)) return ""
    s = substr($0, RSTART + length(name) + 3, RLENGTH - length(name) - 3)
    gsub(/"/, "", s)
    return s
}
/"type":"deploy"/ {
    phase = field("phase")
    if (phase != "" && phase != "started") next
    svc = field("service"); id = field("deploy_id")
    if (!(id in start)) { order[++n] = id }
    start[id] = field("ts") + 0; service[id] = svc; current[svc] = id
    next
}
/"type":"request"/ {
    svc = field("service")
    if (!(svc in current)) next
    id = current[svc]; ts = field("ts") + 0
    if (ts < start[id] || ts >= start[id] + window_s) next
    total[id]++
    if (field("status") + 0 >= 500) errors[id]++
}
END {
    for (i = 1; i <= n; i++) {
        id = order[i]
        rate = total[id] ? errors[id] / total[id] : 0
        decision = rate > threshold ? "rollback" : "confirmed"
        printf "{\"type\":\"verdict\",\"deploy_id\":\"%s\",\"service\":\"%s\",\"decision\":\"%s\",\"ts\":%.3f,\"root_cause\":{\"category\":\"unknown\",\"evidence\":[]},\"reasons\":[\"error rate %.4f over %d requests\"]}\n", id, service[id], decision, start[id] + window_s, rate, total[id]
    }
}' "$events"
