#!/usr/bin/env bash
# Scale benchmark: the plexus-agent binary in Kubernetes mode against a real
# etcd + kube-apiserver (internal/apiservertest) holding 10,000 pods (110 on
# the agent's node) and 2,000 NADs: time to sync, RSS after sync, and ADDs
# checked to read nothing from the API server. Needs root, the reference
# plugins (tools/cni-plugins.sh) and the cluster binaries
# (tools/cluster/build-binaries.sh). Results and their reading:
# docs/benchmarks.md.
#
#   sudo tools/bench/scale.sh
#
# Knobs (environment):
#   PLEXUS_BENCH_SCALE_PODS=10000     pods in the cluster
#   PLEXUS_BENCH_SCALE_NODE_PODS=110  of them on the agent's node
#   PLEXUS_BENCH_SCALE_NADS=2000      NADs (≥ 40), over 20 namespaces
#   PLEXUS_BENCH_SCALE_ADDS=10        ADDs (then DELs) checked per agent
#   PLEXUS_BENCH_SCALE_BASELINE="old=/path/plexus-agent"  more agent binaries
#                                     measured against the same cluster
#   PLEXUS_BENCH_SCALE_KEEP=1         keep the scratch dir (agent and audit logs)
exec "$(dirname "${BASH_SOURCE[0]}")/kube.sh" scale
