package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/plexus-cni/plexus/agent/app"
	"github.com/plexus-cni/plexus/agent/config"
	"github.com/plexus-cni/plexus/agent/netstatus"
	"github.com/plexus-cni/plexus/agent/podresources/podresourcestest"
	"github.com/plexus-cni/plexus/devinfo"
	"github.com/plexus-cni/plexus/internal/cnitest"
	"github.com/plexus-cni/plexus/internal/testplugins/recorder"
)

const vfRes = "example.com/vf"

// devRig is an agent in local mode whose delegates are all the TEST ONLY
// recorder, with a fake kubelet serving PodResources and a device plugin's
// Device Info files for the pod's VFs.
type devRig struct {
	*rig
	kubelet *podresourcestest.Kubelet
	recDir  string
	infoDir string
}

func newDevRig(t *testing.T) *devRig {
	t.Helper()
	cnitest.RequireRoot(t)
	r := newRigDir(t, "plexus", "plexus-test-recorder")
	d := &devRig{rig: r, recDir: filepath.Join(r.dir, "recorded"), infoDir: filepath.Join(r.dir, "devinfo")}

	rec := func(extra string) string {
		return fmt.Sprintf(`{"type":"plexus-test-recorder","recordDir":%q%s}`, d.recDir, extra)
	}
	write(t, filepath.Join(r.dir, "net.d", "10-cluster.conflist"), `{"cniVersion":"1.1.0","name":"cluster","plugins":[`+rec("")+`]}`)
	nad := func(name, resource, config string) string {
		ann := ""
		if resource != "" {
			ann = fmt.Sprintf("\n  annotations: {k8s.v1.cni.cncf.io/resourceName: %s}", resource)
		}
		return fmt.Sprintf("apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata:\n  name: %s\n  namespace: default%s\nspec:\n  config: '%s'\n---\n", name, ann, config)
	}
	pod := func(name, networks string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: default\n  annotations: {k8s.v1.cni.cncf.io/networks: %q}\n---\n", name, networks)
	}
	manifests := nad("sriov-a", vfRes, `{"cniVersion":"1.0.0","name":"sriov-a","plugins":[`+
		rec(`,"recordTag":"main","capabilities":{"deviceID":true,"CNIDeviceInfoFile":true}`)+`,`+rec(`,"recordTag":"chained"`)+`]}`) +
		nad("sriov-b", vfRes, `{"cniVersion":"1.0.0",`+strings.TrimPrefix(rec(""), "{")) +
		nad("plain", "", `{"cniVersion":"1.0.0",`+strings.TrimPrefix(rec(""), "{")) +
		pod("web", "sriov-a,plain,sriov-b") +
		pod("greedy", "sriov-a,sriov-b,sriov-a") +
		pod("norequest", "sriov-b") +
		pod("plainonly", "plain")
	write(t, filepath.Join(r.dir, "manifests", "all.yaml"), manifests)

	d.kubelet = podresourcestest.Start(t, filepath.Join(r.dir, "kubelet.sock"))
	// Kubelet's order: containers as in the pod spec; within one, none.
	d.kubelet.SetPod("default", "web",
		podresourcestest.Container("first", map[string][]string{vfRes: {"0000:03:02.5"}}),
		podresourcestest.Container("second", map[string][]string{vfRes: {"0000:03:02.2", "0000:03:02.1"}}, "0000:03:02.1"))
	d.kubelet.SetPod("default", "greedy", podresourcestest.Container("app", map[string][]string{vfRes: {"0000:03:02.6", "0000:03:02.7"}}))
	d.kubelet.SetPod("default", "norequest", podresourcestest.Container("app", map[string][]string{"example.com/gpu": {"gpu0"}}))
	for _, vf := range []string{"0000:03:02.1", "0000:03:02.2", "0000:03:02.5"} {
		if _, err := devinfo.WritePCI(filepath.Join(d.infoDir, "dp"), vfRes, vf, "0000:03:00.0"); err != nil {
			t.Fatal(err)
		}
	}

	socket := filepath.Join(r.dir, "run", "agent.sock")
	cfgText := fmt.Sprintf("socket: %s\nstateDir: %s\ncniConfDir: %s\nbinDirs: [%s]\nclusterNetwork: cluster\nlocal: {manifestsDir: %s}\npodResourcesSocket: %s\ndeviceInfoDir: %s\n",
		socket, filepath.Join(r.dir, "state"), filepath.Join(r.dir, "net.d"), filepath.Join(r.dir, "bin"), filepath.Join(r.dir, "manifests"), d.kubelet.Socket, d.infoDir)
	write(t, filepath.Join(r.dir, "agent.yaml"), cfgText)
	var err error
	if r.cfg, err = config.Parse([]byte(cfgText), "test"); err != nil {
		t.Fatal(err)
	}
	if r.list, err = libcni.NetworkConfFromBytes([]byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"plexus","plugins":[{"type":"plexus","socketPath":%q}]}`, socket))); err != nil {
		t.Fatal(err)
	}
	r.runtime = libcni.NewCNIConfigWithCacheDir([]string{filepath.Join(r.dir, "bin")}, filepath.Join(r.dir, "runtime"), nil)
	t.Cleanup(func() {
		r.stop(t)
		for _, id := range []string{"devc1", "devc2", "devc3", "devc4", "devc5", "devc6"} {
			for _, ifname := range []string{"eth0", "net1", "net2", "net3"} {
				if l := recorder.HostVethName(id, ifname); hostLink(l) {
					exec(t, "ip", "link", "del", l)
				}
			}
		}
	})
	r.start(t)
	return d
}

func hostLink(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

func podRT(id, netns, pod string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: "eth0",
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "default"}, {"K8S_POD_NAME", pod}}}
}

// recorded returns the configuration a recorder received on ADD.
func (d *devRig) recorded(t *testing.T, id, ifname, tag string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(recorder.RecordPath(d.recDir, id, ifname, tag))
	if err != nil {
		t.Fatalf("recorder of %s %s (%s): %v", id, ifname, tag, err)
	}
	var rec recorder.Record
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	var conf map[string]any
	if err := json.Unmarshal(rec.Stdin, &conf); err != nil {
		t.Fatal(err)
	}
	return conf
}

func (d *devRig) status(t *testing.T, pod string) []netstatus.Entry {
	t.Helper()
	var out bytes.Buffer
	if err := app.Run(context.Background(), []string{"status", "--config", filepath.Join(d.dir, "agent.yaml"), "--pod", "default/" + pod}, &out, os.Stderr); err != nil {
		t.Fatalf("status command: %v", err)
	}
	var shown []struct {
		NetworkStatus []netstatus.Entry `json:"networkStatus"`
	}
	if err := json.Unmarshal(out.Bytes(), &shown); err != nil || len(shown) != 1 {
		t.Fatalf("status output %s: %v", out.String(), err)
	}
	return shown[0].NetworkStatus
}

func (d *devRig) cniInfoFile(id, ifname string) string {
	return filepath.Join(d.infoDir, "cni", id+"_"+ifname+".json")
}

// assertGone fails unless the container left no CNI Device Info file, no
// recorder record and no host link.
func (d *devRig) assertGone(t *testing.T, id string) {
	t.Helper()
	for _, ifname := range []string{"eth0", "net1", "net2", "net3"} {
		if _, err := os.Stat(d.cniInfoFile(id, ifname)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s %s: CNI device info file left: %v", id, ifname, err)
		}
		if hostLink(recorder.HostVethName(id, ifname)) {
			t.Errorf("%s %s: veth left", id, ifname)
		}
	}
	entries, _ := os.ReadDir(d.recDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), id+"_") {
			t.Errorf("recorder record left: %s", e.Name())
		}
	}
	if recs, _ := os.ReadDir(filepath.Join(d.dir, "state", "records")); len(recs) != 0 {
		t.Errorf("attachment records left: %d", len(recs))
	}
}

// Device resources: a pod with two NADs of one resource (and one without) gets the
// devices kubelet allocated it, in the documented order: the first
// container's device, then the second container's lowest. Every plugin of
// the delegate sees deviceID and pciBusID; runtimeConfig.deviceID only the
// one declaring the capability. The network-status carries the device
// plugin's Device Info, the CNI Device Info files exist while the pod does
// and DEL removes them, also with kubelet gone.
func TestDevicesFromKubelet(t *testing.T) {
	d := newDevRig(t)
	ctx := context.Background()

	n := cnitest.NewNS(t)
	if _, err := d.runtime.AddNetworkList(ctx, d.list, podRT("devc1", n.Path(), "web")); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	want := map[string]string{"net1": "0000:03:02.5", "net3": "0000:03:02.1"}
	main := d.recorded(t, "devc1", "net1", "main")
	chained := d.recorded(t, "devc1", "net1", "chained")
	other := d.recorded(t, "devc1", "net3", "")
	for _, c := range []struct {
		what     string
		conf     map[string]any
		deviceID string
		runtime  bool
	}{
		{"net1, plugin declaring deviceID", main, want["net1"], true},
		{"net1, chained plugin", chained, want["net1"], false},
		{"net3", other, want["net3"], false},
	} {
		if c.conf["deviceID"] != c.deviceID || c.conf["pciBusID"] != c.deviceID {
			t.Errorf("%s: deviceID %v, pciBusID %v; want %s", c.what, c.conf["deviceID"], c.conf["pciBusID"], c.deviceID)
		}
		rc, _ := c.conf["runtimeConfig"].(map[string]any)
		if got, ok := rc["deviceID"]; ok != c.runtime || (ok && got != c.deviceID) {
			t.Errorf("%s: runtimeConfig %v, want deviceID there: %v", c.what, rc, c.runtime)
		}
	}
	rc, _ := main["runtimeConfig"].(map[string]any)
	if rc["CNIDeviceInfoFile"] != d.cniInfoFile("devc1", "net1") {
		t.Errorf("runtimeConfig.CNIDeviceInfoFile = %v, want %s", rc["CNIDeviceInfoFile"], d.cniInfoFile("devc1", "net1"))
	}
	for _, ifname := range []string{"eth0", "net2"} {
		if conf := d.recorded(t, "devc1", ifname, ""); conf["deviceID"] != nil || conf["runtimeConfig"] != nil {
			t.Errorf("%s without a resource got deviceID %v / runtimeConfig %v", ifname, conf["deviceID"], conf["runtimeConfig"])
		}
	}

	status := d.status(t, "web")
	byIf := map[string]netstatus.Entry{}
	for _, e := range status {
		byIf[e.Interface] = e
	}
	for ifname, vf := range want {
		info := byIf[ifname].DeviceInfo
		if info == nil || info.Type != "pci" || info.Version != devinfo.SpecVersion || info.PCI == nil || info.PCI.PCIAddress != vf || info.PCI.PFPCIAddress != "0000:03:00.0" {
			t.Errorf("network-status of %s: device-info %+v, want pci %s", ifname, info, vf)
		}
		if _, err := os.Stat(d.cniInfoFile("devc1", ifname)); err != nil {
			t.Errorf("CNI device info file of %s: %v", ifname, err)
		}
	}
	for _, ifname := range []string{"eth0", "net2"} {
		if byIf[ifname].DeviceInfo != nil {
			t.Errorf("network-status of %s has device-info %+v", ifname, byIf[ifname].DeviceInfo)
		}
	}
	if err := d.runtime.DelNetworkList(ctx, d.list, podRT("devc1", n.Path(), "web")); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	d.assertGone(t, "devc1")

	// The same pod again, then kubelet goes away: DEL needs only the record.
	n2 := cnitest.NewNS(t)
	if _, err := d.runtime.AddNetworkList(ctx, d.list, podRT("devc2", n2.Path(), "web")); err != nil {
		t.Fatalf("second ADD: %v", err)
	}
	if _, err := os.Stat(d.cniInfoFile("devc2", "net3")); err != nil {
		t.Fatalf("CNI device info file: %v", err)
	}
	d.kubelet.Stop()
	if _, err := os.Stat(d.kubelet.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("kubelet socket still there: %v", err)
	}
	if err := d.runtime.DelNetworkList(ctx, d.list, podRT("devc2", n2.Path(), "web")); err != nil {
		t.Fatalf("DEL with kubelet gone: %v", err)
	}
	d.assertGone(t, "devc2")

	// Without kubelet, pods that need no device still work; those that do
	// fail with "try again later" and leave nothing.
	n3 := cnitest.NewNS(t)
	if _, err := d.runtime.AddNetworkList(ctx, d.list, podRT("devc3", n3.Path(), "plainonly")); err != nil {
		t.Fatalf("ADD of a pod without devices, kubelet down: %v", err)
	}
	if err := d.runtime.DelNetworkList(ctx, d.list, podRT("devc3", n3.Path(), "plainonly")); err != nil {
		t.Fatal(err)
	}
	_, err := d.runtime.AddNetworkList(ctx, d.list, podRT("devc4", n3.Path(), "web"))
	var cniErr *types.Error
	if !errors.As(err, &cniErr) || cniErr.Code != 11 || !strings.Contains(err.Error(), d.kubelet.Socket) || !strings.Contains(err.Error(), "default/web") {
		t.Errorf("ADD needing devices, kubelet down: %v, want code 11 naming the pod and the socket", err)
	}
	d.assertGone(t, "devc4")
}

// A pod selecting more networks of a resource than it got devices, or a
// resource it did not request at all: ADD fails with an invalid-selection
// error that says so, and nothing is attached.
func TestDevicesMismatch(t *testing.T) {
	d := newDevRig(t)
	ctx := context.Background()
	for _, c := range []struct {
		id, pod string
		mention []string
	}{
		{"devc5", "greedy", []string{"default/greedy", "default/sriov-a", "net3", vfRes, "selects 3 networks", "allocated 2 device"}},
		{"devc6", "norequest", []string{"default/norequest", "default/sriov-b", vfRes, "did not request " + vfRes}},
	} {
		n := cnitest.NewNS(t)
		_, err := d.runtime.AddNetworkList(ctx, d.list, podRT(c.id, n.Path(), c.pod))
		var cniErr *types.Error
		if !errors.As(err, &cniErr) || cniErr.Code != 101 {
			t.Errorf("pod %s: err = %v, want CNI error 101", c.pod, err)
			continue
		}
		for _, m := range c.mention {
			if !strings.Contains(err.Error(), m) {
				t.Errorf("pod %s: error %q does not mention %q", c.pod, err, m)
			}
		}
		if out := cnitest.InNS(t, n, "-o", "link"); strings.Contains(out, "eth0") {
			t.Errorf("pod %s: links left:\n%s", c.pod, out)
		}
		d.assertGone(t, c.id)
	}
}
