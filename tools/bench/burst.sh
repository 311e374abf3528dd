#!/usr/bin/env bash
# Burst benchmark: N (default 200) concurrent CNI ADDs, then N concurrent
# DELs, through the real shim against the real plexus-agent binary in
# Kubernetes mode (a real etcd + kube-apiserver from internal/apiservertest),
# with the agent's RSS sampled at idle and during the bursts. Needs root,
# the reference plugins (tools/cni-plugins.sh) and the cluster binaries
# (tools/cluster/build-binaries.sh). Results and their reading:
# docs/benchmarks.md.
#
#   sudo tools/bench/burst.sh
#
# Knobs (environment):
#   PLEXUS_BENCH_BURST_PODS=200             pods in the burst
#   PLEXUS_BENCH_BURST_MAXCONCURRENT=N      agent maxConcurrent (default: the agent's, 64)
#   PLEXUS_BENCH_BURST_AGENT_ENV="GOGC=50"  extra environment for the agent process
#   PLEXUS_BENCH_BURST_KEEP=1               keep the scratch dir (agent log)
exec "$(dirname "${BASH_SOURCE[0]}")/kube.sh" burst
