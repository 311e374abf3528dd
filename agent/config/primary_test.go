package config_test

import (
	"strings"
	"testing"

	"github.com/plexus-cni/plexus/agent/config"
)

// With cniConf the cluster network defaults to the node's primary CNI
// configuration, so clusterNetwork may be left out; without it (local mode
// with no generator, for one) there is nothing to default to and the error
// says what to set.
func TestClusterNetworkOptionalWithCNIConf(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte("cniConf: {}\nauxiliaryCNIChainName: chain\n"), "test")
	if err != nil {
		t.Fatalf("cniConf without clusterNetwork: %v", err)
	}
	if c.ClusterNetwork != "" || c.AuxiliaryCNIChainName != "chain" {
		t.Errorf("clusterNetwork %q auxiliaryCNIChainName %q", c.ClusterNetwork, c.AuxiliaryCNIChainName)
	}
	_, err = config.Parse([]byte("local: {manifestsDir: /m}\n"), "test")
	if err == nil || !strings.Contains(err.Error(), "clusterNetwork: required without cniConf") {
		t.Errorf("local mode without cniConf or clusterNetwork: %v, want clusterNetwork required without cniConf", err)
	}
	for _, bad := range []string{"../x", "a/b", ".."} {
		if _, err := config.Parse([]byte("cniConf: {}\nauxiliaryCNIChainName: '"+bad+"'\n"), "test"); err == nil || !strings.Contains(err.Error(), "auxiliaryCNIChainName") {
			t.Errorf("auxiliaryCNIChainName %q: %v, want an error naming the key", bad, err)
		}
	}
}
