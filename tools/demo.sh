#!/usr/bin/env bash
# The local demo: the plexus agent in local mode attaches two "pods"
# (network namespaces) to three networks each through the real plexus shim
# and the reference CNI plugins, pings between them over every network,
# prints their network-status, deletes them and shows nothing is left.
#
#   tools/demo.sh            set up what the demo needs (tools/setup.sh --demo), build, run
#   tools/demo.sh --no-setup run with what is already installed
#
# As root, or through sudo (tools/as-root.sh). Exits non-zero if any step or
# check fails. Cleans up on every exit and prints how long it all took.
set -euo pipefail
. "$(dirname "$0")/as-root.sh"
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m== %s\033[0m (%ss)\n' "$*" "$SECONDS"; }
fail() { echo "DEMO FAILED: $*" >&2; exit 1; }

if [ "${1:-}" != "--no-setup" ]; then
  step "set up: Debian packages, Go, the demo's reference CNI plugins (tools/setup.sh --demo)"
  tools/setup.sh --demo
fi
export PATH="/usr/local/go/bin:$PATH"
plugins=$(tools/cni-plugins.sh --demo)

work=$(mktemp -d /tmp/plexus-demo.XXXXXX)
pods=(plexus-demo-a plexus-demo-b)
agent_pid=""

cleanup() {
  local rc=$?
  set +e
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
  for p in "${pods[@]}"; do ip netns del "$p" 2>/dev/null; done
  for l in pxdemo-up0 pxdemo0 pxdemo2; do ip link del "$l" 2>/dev/null; done
  rm -rf "$work"
  echo "tools/demo.sh: $((SECONDS / 60)) min $((SECONDS % 60)) s in all" >&2
  return "$rc"
}
trap cleanup EXIT

step "build plexus (the C shim), plexus-agent and cniexec, the runtime stand-in (tools/build.sh)"
mkdir -p "$work/bin" "$work/runtime-bin"
tools/build.sh "$work/bin" plexus plexus-agent cniexec
cp "$work/bin/plexus" "$work/runtime-bin/plexus"

step "configure: cluster network, two NADs, two pods"
mkdir -p "$work/net.d" "$work/manifests" "$work/runtime-conf" "$work/state"
ipam="$work/ipam"
# What the runtime sees: the plexus conflist (the agent would generate it in
# Kubernetes mode). socketPath points the shim at this demo's agent.
cat > "$work/runtime-conf/00-plexus.conflist" <<JSON
{"cniVersion":"1.1.0","name":"plexus","plugins":[{"type":"plexus","socketPath":"$work/run/agent.sock"}]}
JSON
# The cluster default network: every pod's eth0.
cat > "$work/net.d/10-cluster.conflist" <<JSON
{"cniVersion":"1.1.0","name":"cluster","plugins":[
  {"type":"bridge","bridge":"pxdemo0","isGateway":true,
   "ipam":{"type":"host-local","subnet":"10.240.0.0/24","dataDir":"$ipam"}}]}
JSON
# macvlan needs an uplink; this machine has no dummy module, so a veth pair
# stands in for the NIC.
ip link add pxdemo-up0 type veth peer name pxdemo-up1
ip link set pxdemo-up0 up
ip link set pxdemo-up1 up
cat > "$work/manifests/networks.yaml" <<YAML
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: fast, namespace: demo}
spec:
  config: '{"cniVersion":"1.0.0","type":"macvlan","master":"pxdemo-up0","mode":"bridge",
            "ipam":{"type":"host-local","subnet":"10.241.0.0/24","dataDir":"$ipam"}}'
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: storage, namespace: demo}
spec:
  config: '{"cniVersion":"0.4.0","name":"storage","plugins":[{"type":"bridge","bridge":"pxdemo2",
            "capabilities":{"ips":true},"ipam":{"type":"static"}}]}'
YAML
for i in 0 1; do
  cat > "$work/manifests/pod-$i.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: ${pods[$i]}
  namespace: demo
  annotations:
    k8s.v1.cni.cncf.io/networks: '[{"name":"fast"},{"name":"storage","ips":["10.242.0.1$i/24"]}]'
YAML
done
cat > "$work/agent.yaml" <<YAML
socket: $work/run/agent.sock
stateDir: $work/state
cniConfDir: $work/net.d
binDirs: [$plugins]
clusterNetwork: cluster
hotplug: true
local: {manifestsDir: $work/manifests}
YAML
sed -n '1,200p' "$work/manifests/networks.yaml"

step "start plexus-agent (local mode)"
"$work/bin/plexus-agent" run --config "$work/agent.yaml" >"$work/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 100); do [ -S "$work/run/agent.sock" ] && break; sleep 0.05; done
[ -S "$work/run/agent.sock" ] || { cat "$work/agent.log"; fail "agent did not start"; }

runtime() {
  "$work/bin/cniexec" -conf-dir "$work/runtime-conf" -bin-dir "$work/runtime-bin" -cache-dir "$work/runtime-cache" "$@"
}

step "ADD both pods (runtime -> plexus shim -> agent -> bridge, macvlan, bridge)"
for p in "${pods[@]}"; do
  ip netns add "$p"
  runtime add -netns "/var/run/netns/$p" -container "$p" -pod "demo/$p" >"$work/$p.result"
  echo "$p: ADD ok, result for eth0: $(cat "$work/$p.result")"
done

step "interfaces inside each pod"
for p in "${pods[@]}"; do
  echo "--- $p"
  ip -n "$p" -br addr show | grep -v '^lo'
  for ifc in eth0 net1 net2; do
    ip -n "$p" link show "$ifc" >/dev/null 2>&1 || fail "$p has no $ifc"
  done
done

addr() { ip -n "$1" -4 -o addr show dev "$2" | awk '{print $4}' | cut -d/ -f1; }
step "ping pod a -> pod b over each network (inside the namespaces only)"
for ifc in eth0 net1 net2; do
  dst=$(addr "${pods[1]}" "$ifc")
  if ip netns exec "${pods[0]}" ping -c 2 -W 2 -I "$ifc" "$dst" >"$work/ping" 2>&1; then
    echo "$ifc: ${pods[0]} -> ${pods[1]} ($dst): $(grep -o '[0-9]* received' "$work/ping")"
  else
    cat "$work/ping"; fail "ping over $ifc to $dst failed"
  fi
done
[ "$(addr "${pods[0]}" net2)" = 10.242.0.10 ] || fail "static IP from the ips key not applied"

step "network-status of each pod (k8s.v1.cni.cncf.io/network-status)"
for p in "${pods[@]}"; do
  "$work/bin/plexus-agent" status --config "$work/agent.yaml" --pod "demo/$p"
done

# waitlink POD IFNAME present|absent: poll to a deadline.
waitlink() {
  for _ in $(seq 100); do
    if ip -n "$1" link show "$2" >/dev/null 2>&1; then [ "$3" = present ] && return 0; else [ "$3" = absent ] && return 0; fi
    sleep 0.05
  done
  fail "$1: $2 not $3 within 5 s"
}
step "hot-plug: add a second fast network to pod a by editing its manifest, then remove it"
manifest="$work/manifests/pod-0.yaml"
sed -i 's/\[{"name":"fast"},/[{"name":"fast"},{"name":"fast","interface":"hot0"},/' "$manifest"
waitlink "${pods[0]}" hot0 present
echo "${pods[0]}: hot0 attached: $(addr "${pods[0]}" hot0)"
sed -i 's/{"name":"fast","interface":"hot0"},//' "$manifest"
waitlink "${pods[0]}" hot0 absent
echo "${pods[0]}: hot0 detached"

step "DEL both pods"
for p in "${pods[@]}"; do
  runtime del -netns "/var/run/netns/$p" -container "$p" -pod "demo/$p"
  echo "$p: DEL ok"
done

step "nothing left behind"
left=0
for p in "${pods[@]}"; do
  links=$(ip -n "$p" -o link show | awk -F': ' '{print $2}' | grep -v '^lo$' || true)
  echo "$p links besides lo: ${links:-none}"
  [ -z "$links" ] || left=1
done
allocs=$(find "$ipam" -type f ! -name lock ! -name 'last_reserved_ip*' 2>/dev/null || true)
echo "IP allocations: ${allocs:-none}"
records=$(find "$work/state/records" -type f 2>/dev/null || true)
echo "attachment records: ${records:-none}"
[ -z "$allocs" ] && [ -z "$records" ] && [ "$left" = 0 ] || fail "something leaked"
echo
echo "DEMO OK: 2 pods x 3 networks attached, pinged, reported, one network hot-plugged and removed, all without leaks."
