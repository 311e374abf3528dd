package attach

import (
	"slices"
	"testing"

	"github.com/plexus-cni/plexus/agent/record"
	"github.com/plexus-cni/plexus/agent/selection"
)

// diff matches elements naming an interface first, then the others with
// the first unmatched attachment of their network; only the selection's
// attachments are ever removed.
func TestDiff(t *testing.T) {
	t.Parallel()
	atts := []record.Attachment{
		{Network: "cluster", IfName: "eth0", Origin: record.OriginCluster},
		{Network: "kube-system/admin", IfName: "net1", Origin: record.OriginDefault},
		{Network: "apps/a", IfName: "net2", Origin: record.OriginSelection},
		{Network: "apps/a", IfName: "fast0", Origin: record.OriginSelection},
		{Network: "apps/b", IfName: "net3", Origin: record.OriginSelection},
		{Network: "tuning", IfName: "eth0", Origin: record.OriginAuxiliary},
	}
	el := func(name, ifname string) selection.Element {
		return selection.Element{Namespace: "apps", Name: name, Interface: ifname}
	}
	for _, c := range []struct {
		name   string
		elems  []selection.Element
		add    []string // element keys and interfaces
		remove []int
	}{
		{"unchanged", []selection.Element{el("a", ""), el("a", "fast0"), el("b", "")}, nil, nil},
		// The unnamed a must not take fast0, which the named one claims.
		{"named first", []selection.Element{el("a", ""), el("a", "fast0")}, nil, []int{4}},
		{"unnamed takes the first", []selection.Element{el("a", "")}, nil, []int{3, 4}},
		{"all removed", nil, nil, []int{2, 3, 4}},
		{"added", []selection.Element{el("a", ""), el("a", "fast0"), el("b", ""), el("c", ""), el("b", "")}, []string{"apps/c:", "apps/b:"}, nil},
		{"renamed", []selection.Element{el("a", ""), el("a", "slow0"), el("b", "")}, []string{"apps/a:slow0"}, []int{3}},
		{"admin network asked for", []selection.Element{{Namespace: "kube-system", Name: "admin"}}, []string{"kube-system/admin:"}, []int{2, 3, 4}},
	} {
		add, remove := diff(c.elems, atts)
		var got []string
		for _, e := range add {
			got = append(got, e.Key()+":"+e.Interface)
		}
		if !slices.Equal(got, c.add) || !slices.Equal(remove, c.remove) {
			t.Errorf("%s: add %v, remove %v; want add %v, remove %v", c.name, got, remove, c.add, c.remove)
		}
	}
}
