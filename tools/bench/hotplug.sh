#!/usr/bin/env bash
# Hot-plug benchmark: one pod attached through the real shim to the real
# plexus-agent binary in Kubernetes mode (a real etcd + kube-apiserver from
# internal/apiservertest), then N (default 50) patches of its networks
# annotation, alternately adding and removing a second NAD, each timed from
# the patch to net2 up (or gone) in the pod's namespace and in the
# network-status. Needs root, the reference plugins and the cluster
# binaries (tools/cluster/build-binaries.sh). Results: docs/benchmarks.md.
#
#   sudo tools/bench/hotplug.sh
#
# Knobs (environment):
#   PLEXUS_BENCH_HOTPLUG_CHANGES=50   annotation changes (half attach, half detach)
#   PLEXUS_BENCH_HOTPLUG_KEEP=1       keep the scratch dir (agent log)
exec "$(dirname "${BASH_SOURCE[0]}")/kube.sh" hotplug
