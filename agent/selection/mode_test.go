package selection_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/plexus-cni/plexus/agent/selection"
)

// Selection modes: what a Multus cluster's pods write that the spec does not
// allow is accepted with a warning in compatible mode and refused in
// strict mode.
func TestParseModes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		value string
		// want is the compatible result, warnField the field it warns
		// about; strictField the field strict mode refuses.
		want        selection.Element
		warnField   string
		strictField string
	}{
		{name: "deprecated interfaceRequest", value: `[{"name":"blue","interfaceRequest":"fast0"}]`,
			want: selection.Element{Name: "blue", Namespace: "podns", Interface: "fast0"}, warnField: "interfaceRequest", strictField: "interfaceRequest"},
		{name: "unknown key", value: `[{"name":"blue","colour":"red"}]`,
			want: selection.Element{Name: "blue", Namespace: "podns"}, warnField: "colour", strictField: "colour"},
		{name: "dotted key ignored in both", value: `[{"name":"blue","example.com/x":1}]`,
			want: selection.Element{Name: "blue", Namespace: "podns"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, warnings, err := selection.Options{Mode: selection.Compatible}.Parse(pod, tt.value)
			if err != nil {
				t.Fatalf("compatible: %v", err)
			}
			if len(got) != 1 || !reflect.DeepEqual(got[0], tt.want) {
				t.Errorf("compatible = %+v, want [%+v]", got, tt.want)
			}
			if tt.warnField == "" {
				if len(warnings) != 0 {
					t.Errorf("warnings = %v, want none", warnings)
				}
			} else if len(warnings) != 1 || warnings[0].Field != tt.warnField || warnings[0].Network != "podns/blue" {
				t.Errorf("warnings = %v, want one for podns/blue field %q", warnings, tt.warnField)
			}
			for _, mode := range []selection.Mode{"", selection.Strict} {
				_, _, err := selection.Options{Mode: mode}.Parse(pod, tt.value)
				if tt.strictField == "" {
					if err != nil {
						t.Errorf("mode %q: %v", mode, err)
					}
					continue
				}
				wantSelErr(t, err, "podns/blue", tt.strictField)
			}
		})
	}
}

// interfaceRequest next to interface is ambiguous in every mode.
func TestParseInterfaceRequestWithInterface(t *testing.T) {
	t.Parallel()
	_, _, err := selection.Options{Mode: selection.Compatible}.Parse(pod, `[{"name":"blue","interface":"a0","interfaceRequest":"b0"}]`)
	wantSelErr(t, err, "podns/blue", "interfaceRequest")
	// The aliased value is validated as an interface name.
	_, _, err = selection.Options{Mode: selection.Compatible}.Parse(pod, `[{"name":"blue","interfaceRequest":"a/b"}]`)
	wantSelErr(t, err, "podns/blue", "interface")
}

// Options.Namespace is where networks without a namespace are, in both
// forms (the default-network override's bare names are the system
// namespace's).
func TestParseNamespaceOption(t *testing.T) {
	t.Parallel()
	o := selection.Options{Namespace: "kube-system"}
	for _, value := range []string{"net1", `[{"name":"net1"}]`} {
		e, _, err := o.ParseDefaultNetwork(pod, value)
		if err != nil {
			t.Fatalf("%s: %v", value, err)
		}
		if e.Key() != "kube-system/net1" {
			t.Errorf("%s: got %s, want kube-system/net1", value, e.Key())
		}
	}
	_, _, err := o.ParseDefaultNetwork(pod, "Bad")
	if err == nil || !strings.Contains(err.Error(), pod.String()) {
		t.Errorf("error %v does not name the pod", err)
	}
}
