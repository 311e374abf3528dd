package recorder_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/testutils"

	"github.com/plexus-cni/plexus/internal/cnitest"
	"github.com/plexus-cni/plexus/internal/testplugins/recorder"
)

// The test binary doubles as the plugin when exec'd under its name.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "plexus-test-recorder" {
		recorder.Main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func readRecord(t *testing.T, path string) recorder.Record {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("record: %v", err)
	}
	var r recorder.Record
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func hostLinkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

// In-process, for every spec version: ADD records stdin and the CNI_*
// environment and attaches the pair; CHECK passes; DEL removes pair and
// record, twice.
func TestAddCheckDel(t *testing.T) {
	for _, v := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			n := cnitest.NewNS(t)
			dir := t.TempDir()
			conf := fmt.Sprintf(`{"cniVersion":%q,"name":"rec","type":"plexus-test-recorder","recordDir":%q,"deviceID":"0000:03:02.1"}`, v, dir)
			id := "rec-" + strings.ReplaceAll(v, ".", "")
			args := &skel.CmdArgs{ContainerID: id, Netns: n.Path(), IfName: "net1", StdinData: []byte(conf)}
			funcs := recorder.Funcs()
			res, _, err := testutils.CmdAddWithArgs(args, func() error { return funcs.Add(args) })
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			if res.Version() != v {
				t.Errorf("result version %s, want %s", res.Version(), v)
			}
			r, err := current.NewResultFromResult(res)
			if err != nil {
				t.Fatal(err)
			}
			host := recorder.HostVethName(id, "net1")
			if len(r.Interfaces) != 2 || r.Interfaces[0].Name != host || r.Interfaces[1].Name != "net1" || r.Interfaces[1].Sandbox != n.Path() {
				t.Errorf("result interfaces = %+v", r.Interfaces)
			}
			if !hostLinkExists(host) || !strings.Contains(cnitest.InNS(t, n, "link", "show", "net1"), "UP") {
				t.Errorf("veth %s/net1 missing or down", host)
			}
			rec := readRecord(t, recorder.RecordPath(dir, id, "net1", ""))
			if string(rec.Stdin) != conf {
				t.Errorf("recorded stdin %s, want %s", rec.Stdin, conf)
			}
			if rec.Env["CNI_COMMAND"] != "ADD" || rec.Env["CNI_CONTAINERID"] != id || rec.Env["CNI_IFNAME"] != "net1" || rec.Env["CNI_NETNS"] != n.Path() {
				t.Errorf("recorded env %v", rec.Env)
			}
			if err := testutils.CmdCheckWithArgs(args, func() error { return funcs.Check(args) }); err != nil {
				t.Errorf("CHECK: %v", err)
			}
			for i := range 2 {
				if err := testutils.CmdDelWithArgs(args, func() error { return funcs.Del(args) }); err != nil {
					t.Fatalf("DEL #%d: %v", i+1, err)
				}
			}
			if hostLinkExists(host) {
				t.Errorf("host end %s left after DEL", host)
			}
			if _, err := os.Stat(recorder.RecordPath(dir, id, "net1", "")); !os.IsNotExist(err) {
				t.Errorf("record left after DEL: %v", err)
			}
			if err := testutils.CmdCheckWithArgs(args, func() error { return funcs.Check(args) }); err == nil {
				t.Error("CHECK after DEL passed")
			}
		})
	}
}

func TestBadConfig(t *testing.T) {
	n := cnitest.NewNS(t)
	for _, conf := range []string{
		`{"cniVersion":"1.0.0","name":"rec","type":"plexus-test-recorder"}`,
		`{"cniVersion":"1.0.0","name":"rec","type":"plexus-test-recorder","recordDir":"relative"}`,
		`{"cniVersion":"1.0.0","name":"rec","type":"plexus-test-recorder","recordDir":"/tmp","recordTag":"a/b"}`,
	} {
		args := &skel.CmdArgs{ContainerID: "bad", Netns: n.Path(), IfName: "net1", StdinData: []byte(conf)}
		if _, _, err := testutils.CmdAddWithArgs(args, func() error { return recorder.Funcs().Add(args) }); err == nil {
			t.Errorf("ADD with %s succeeded", conf)
		}
	}
}

// Through libcni and exec, as a runtime or the agent runs it: two
// recorders in one conflist, the second chained (tagged records, the
// first one's result passed on), and DEL of both.
func TestConflistThroughExec(t *testing.T) {
	n := cnitest.NewNS(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, dir := t.TempDir(), t.TempDir()
	if err := os.Symlink(self, filepath.Join(bin, "plexus-test-recorder")); err != nil {
		t.Fatal(err)
	}
	list, err := libcni.NetworkConfFromBytes([]byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"chain","plugins":[
		{"type":"plexus-test-recorder","recordDir":%q,"recordTag":"first"},
		{"type":"plexus-test-recorder","recordDir":%q,"recordTag":"second"}]}`, dir, dir)))
	if err != nil {
		t.Fatal(err)
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{bin}, t.TempDir(), nil)
	rt := &libcni.RuntimeConf{ContainerID: "chain1", NetNS: n.Path(), IfName: "eth0"}
	res, err := cni.AddNetworkList(context.Background(), list, rt)
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	r, _ := current.NewResultFromResult(res)
	if len(r.Interfaces) != 2 || r.Interfaces[1].Name != "eth0" {
		t.Errorf("chain result = %+v", r.Interfaces)
	}
	second := readRecord(t, recorder.RecordPath(dir, "chain1", "eth0", "second"))
	if !strings.Contains(string(second.Stdin), `"prevResult"`) {
		t.Errorf("the chained recorder did not get prevResult: %s", second.Stdin)
	}
	readRecord(t, recorder.RecordPath(dir, "chain1", "eth0", "first"))
	if err := cni.CheckNetworkList(context.Background(), list, rt); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := cni.DelNetworkList(context.Background(), list, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("records left: %v", entries)
	}
	if hostLinkExists(recorder.HostVethName("chain1", "eth0")) {
		t.Error("host end left")
	}
}
