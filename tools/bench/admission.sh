#!/usr/bin/env bash
# Admission benchmark: the real plexus-webhook binary registered by URL
# over TLS (its own certificate, --tls-secret) with a real etcd +
# kube-apiserver (internal/apiservertest), then rounds of 50 concurrent pod
# creates, each selecting three NADs (two with a resourceName) so that both
# pod webhooks run; every pod is checked for its injected resources. Prints
# the webhook's latency per handler from its plexus_admission_duration_seconds
# histogram, the API server's of each webhook call, the create's as its
# client sees it, and a direct load timed per request. The webhook is built
# here (go build -trimpath -ldflags "-s -w") unless tools/build.sh built it.
# Needs the cluster binaries (tools/cluster/build-binaries.sh). Results:
# docs/benchmarks.md.
#
#   sudo tools/bench/admission.sh
#
# Knobs (environment):
#   PLEXUS_BENCH_ADMISSION_PODS=50     concurrent creates per round
#   PLEXUS_BENCH_ADMISSION_ROUNDS=20   rounds measured (after one warm-up)
#   PLEXUS_BENCH_ADMISSION_KEEP=1      keep the scratch dir (webhook log)
exec "$(dirname "${BASH_SOURCE[0]}")/kube.sh" admission
