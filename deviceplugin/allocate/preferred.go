package allocate

import (
	"cmp"
	"slices"

	"github.com/plexus-cni/plexus/deviceplugin/discovery"
	"github.com/plexus-cni/plexus/deviceplugin/pool"
)

// Preferred picks size devices from available, always including
// mustInclude. It keeps the set on one NUMA node when any node can hold
// it (the node of the must-include devices first, then the node with the
// most free devices), and spreads over or packs onto PFs per policy.
// It returns fewer than size IDs only when available has fewer.
func Preferred(available, mustInclude []string, size int, devs map[string]discovery.Device, policy pool.Policy) []string {
	chosen := slices.Clone(mustInclude)
	taken := map[string]bool{}
	for _, id := range mustInclude {
		taken[id] = true
	}
	need := size - len(chosen)
	if need <= 0 {
		return chosen
	}
	// Candidates grouped by NUMA node.
	byNode := map[int][]string{}
	for _, id := range available {
		if taken[id] {
			continue
		}
		byNode[devs[id].NUMANode] = append(byNode[devs[id].NUMANode], id)
	}
	nodes := make([]int, 0, len(byNode))
	for n := range byNode {
		nodes = append(nodes, n)
	}
	mustNode := map[int]int{}
	for _, id := range mustInclude {
		mustNode[devs[id].NUMANode]++
	}
	// Order: nodes that can satisfy the request alone first; among them
	// the node the must-include devices live on, then the fullest node;
	// lowest node ID breaks ties so the answer is deterministic.
	slices.SortFunc(nodes, func(a, b int) int {
		fa, fb := len(byNode[a]) >= need, len(byNode[b]) >= need
		if fa != fb {
			if fa {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(mustNode[b], mustNode[a]); c != 0 {
			return c
		}
		if c := cmp.Compare(len(byNode[b]), len(byNode[a])); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	// PF usage counts include the must-include devices so that spread
	// and pack account for them.
	perPF := map[string]int{}
	for _, id := range mustInclude {
		perPF[pfKey(devs[id])]++
	}
	for _, n := range nodes {
		picked := pickFromNode(byNode[n], need, devs, policy, perPF)
		chosen = append(chosen, picked...)
		need -= len(picked)
		if need == 0 {
			break
		}
	}
	return chosen
}

// pfKey groups devices by PF; a device without a PF is its own group.
func pfKey(d discovery.Device) string {
	if d.PFAddress != "" {
		return d.PFAddress
	}
	return d.Address
}

func pickFromNode(ids []string, need int, devs map[string]discovery.Device, policy pool.Policy, perPF map[string]int) []string {
	groups := map[string][]string{}
	for _, id := range ids {
		k := pfKey(devs[id])
		groups[k] = append(groups[k], id)
	}
	for _, g := range groups {
		slices.Sort(g)
	}
	var out []string
	for len(out) < need {
		best := ""
		for k, g := range groups {
			if len(g) == 0 {
				continue
			}
			if best == "" || better(k, best, groups, perPF, policy) {
				best = k
			}
		}
		if best == "" {
			break
		}
		out = append(out, groups[best][0])
		groups[best] = groups[best][1:]
		perPF[best]++
	}
	return out
}

// better reports whether PF a should give the next device before PF b.
func better(a, b string, groups map[string][]string, perPF map[string]int, policy pool.Policy) bool {
	ua, ub := perPF[a], perPF[b]
	if policy == pool.PolicyPack {
		// Keep filling the PF already in use, then the PF with most free.
		if ua != ub {
			return ua > ub
		}
		if la, lb := len(groups[a]), len(groups[b]); la != lb {
			return la > lb
		}
		return a < b
	}
	if ua != ub {
		return ua < ub
	}
	if la, lb := len(groups[a]), len(groups[b]); la != lb {
		return la > lb
	}
	return a < b
}
