package attach

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plexus-cni/plexus/agent/devices"
	"github.com/plexus-cni/plexus/agent/record"
	"github.com/plexus-cni/plexus/agent/resolve"
	"github.com/plexus-cni/plexus/agent/source"
	"github.com/plexus-cni/plexus/agent/source/local"
	"github.com/plexus-cni/plexus/devinfo"
)

const vf = "example.com/vf"

// fakeDevices answers from a fixed allocation and counts the questions.
type fakeDevices struct {
	containers []devices.Container
	err        error
	calls      int
}

func (f *fakeDevices) PodDevices(_ context.Context, namespace, name string) ([]devices.Container, error) {
	f.calls++
	return f.containers, f.err
}

type planRig struct {
	t    *testing.T
	dir  string
	mgr  *Manager
	devs *fakeDevices
}

// newPlanRig is a Manager over local manifests: a cluster network, NADs
// with and without a resource, and pods selecting them.
func newPlanRig(t *testing.T, noSource bool) *planRig {
	t.Helper()
	r := &planRig{t: t, dir: t.TempDir(), devs: &fakeDevices{containers: []devices.Container{
		{Name: "app", Resources: map[string][]string{vf: {"0000:03:02.2", "0000:03:02.1"}}},
	}}}
	man := filepath.Join(r.dir, "manifests")
	if err := os.MkdirAll(man, 0o755); err != nil {
		t.Fatal(err)
	}
	nad := func(name, resource, config string) string {
		doc := map[string]any{"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
			"metadata": map[string]any{"name": name, "namespace": "default", "annotations": map[string]string{}},
			"spec":     map[string]any{"config": config}}
		if resource != "" {
			doc["metadata"].(map[string]any)["annotations"] = map[string]string{source.ResourceNameAnnotation: resource}
		}
		data, _ := json.Marshal(doc)
		return string(data) + "\n---\n"
	}
	pod := func(name, networks string) string {
		data, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": name, "namespace": "default", "annotations": map[string]string{source.NetworksAnnotation: networks}}})
		return string(data) + "\n---\n"
	}
	docs := nad("cluster", "", `{"cniVersion":"1.0.0","type":"bridge"}`) +
		nad("sriov", vf, `{"cniVersion":"1.0.0","name":"sriov","plugins":[{"type":"sriov","capabilities":{"deviceID":true}},{"type":"tuning","capabilities":{"CNIDeviceInfoFile":true}}]}`) +
		nad("vdpa", vf, `{"cniVersion":"1.0.0","type":"host-device"}`) +
		nad("plain", "", `{"cniVersion":"1.0.0","type":"macvlan"}`) +
		nad("devfile", "", `{"cniVersion":"1.0.0","type":"userspace","capabilities":{"CNIDeviceInfoFile":true}}`) +
		pod("sriov", "sriov,plain,vdpa") +
		pod("plain", "plain") +
		pod("devfile", "devfile") +
		pod("pinned", `[{"name":"plain","deviceID":"dev7"},{"name":"sriov","deviceID":"0000:03:02.2"},{"name":"vdpa"}]`)
	if err := os.WriteFile(filepath.Join(man, "all.json"), []byte(docs), 0o644); err != nil {
		t.Fatal(err)
	}
	records, err := record.Open(filepath.Join(r.dir, "records"))
	if err != nil {
		t.Fatal(err)
	}
	dir := &local.Dir{Path: man}
	o := Options{Config: Config{ClusterNetwork: "default/cluster", DeviceInfoDir: filepath.Join(r.dir, "devinfo")},
		Pods: dir, Resolver: &resolve.Resolver{NADs: dir}, Records: records, CacheDir: filepath.Join(r.dir, "cache"), Devices: r.devs}
	if noSource {
		o.Devices = nil
	}
	if r.mgr, err = New(o); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *planRig) plan(pod string, runtimeConfig map[string]any) ([]planned, error) {
	r.t.Helper()
	conf, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": "plexus", "type": "plexus", "runtimeConfig": runtimeConfig})
	args := "IgnoreUnknown=1"
	if pod != "" {
		args += ";K8S_POD_NAMESPACE=default;K8S_POD_NAME=" + pod
	}
	inv, err := validate(&Request{Verb: VerbAdd, ContainerID: "c1", Netns: "/var/run/netns/x", IfName: "eth0", Args: args, Config: conf})
	if err != nil {
		r.t.Fatal(err)
	}
	p, err := r.mgr.lookupPod(context.Background(), inv)
	if err != nil {
		r.t.Fatal(err)
	}
	return r.mgr.plan(context.Background(), inv, p)
}

// pluginKeys returns each plugin's value of key in the planned config.
func pluginKeys(t *testing.T, p planned, key string) []any {
	t.Helper()
	var conf struct {
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(p.network.Config.Bytes, &conf); err != nil {
		t.Fatal(err)
	}
	var out []any
	for _, pl := range conf.Plugins {
		out = append(out, pl[key])
	}
	return out
}

func TestPlanDevices(t *testing.T) {
	t.Parallel()
	r := newPlanRig(t, false)
	if _, err := devinfo.WritePCI(filepath.Join(r.dir, "devinfo", "dp"), vf, "0000:03:02.1", ""); err != nil {
		t.Fatal(err)
	}
	runtimeConfig := map[string]any{"portMappings": []any{}}
	plan, err := r.plan("sriov", runtimeConfig)
	if err != nil {
		t.Fatal(err)
	}
	if r.devs.calls != 1 {
		t.Errorf("kubelet asked %d times, want once", r.devs.calls)
	}
	if len(plan) != 4 {
		t.Fatalf("plan has %d attachments", len(plan))
	}
	sriov, plain, vdpa := plan[1], plan[2], plan[3]
	if sriov.deviceID != "0000:03:02.1" || vdpa.deviceID != "0000:03:02.2" || plain.deviceID != "" || plan[0].deviceID != "" {
		t.Errorf("devices: eth0 %q, net1 %q, net2 %q, net3 %q", plan[0].deviceID, sriov.deviceID, plain.deviceID, vdpa.deviceID)
	}
	for _, key := range []string{"deviceID", "pciBusID"} {
		if got := fmt.Sprint(pluginKeys(t, sriov, key)); got != "[0000:03:02.1 0000:03:02.1]" {
			t.Errorf("net1 plugins' %s = %s, want the device in both", key, got)
		}
	}
	if got := fmt.Sprint(pluginKeys(t, plain, "deviceID")); got != "[<nil>]" {
		t.Errorf("net2 got deviceID %s", got)
	}
	if sriov.capArgs["deviceID"] != "0000:03:02.1" || vdpa.capArgs["deviceID"] != "0000:03:02.2" {
		t.Errorf("runtimeConfig deviceID: net1 %v, net3 %v", sriov.capArgs, vdpa.capArgs)
	}
	// The device plugin wrote a file for net1's device only; both device
	// attachments get a CNI file path, passed on as CNIDeviceInfoFile.
	if sriov.devInfo == nil || vdpa.devInfo != nil {
		t.Errorf("device plugin info: net1 %s, net3 %s", sriov.devInfo, vdpa.devInfo)
	}
	if sriov.devInfoFile != r.mgr.info.CNIPath("c1", "net1") || sriov.capArgs["CNIDeviceInfoFile"] != sriov.devInfoFile || vdpa.devInfoFile == "" || plain.devInfoFile != "" {
		t.Errorf("CNI device info files: net1 %q (%v), net2 %q, net3 %q", sriov.devInfoFile, sriov.capArgs, plain.devInfoFile, vdpa.devInfoFile)
	}
	if len(runtimeConfig) != 1 || len(plan[0].capArgs) != 1 {
		t.Errorf("the runtime's runtimeConfig was changed: %v", runtimeConfig)
	}
}

// No network names a resource, or there is no pod to ask about: kubelet is
// not asked, so nodes and local setups without kubelet keep working.
func TestPlanDevicesOnlyWhenNeeded(t *testing.T) {
	t.Parallel()
	r := newPlanRig(t, false)
	r.devs.err = errors.New("kubelet is down")
	for _, pod := range []string{"plain", "devfile", ""} {
		plan, err := r.plan(pod, nil)
		if err != nil {
			t.Fatalf("pod %q: %v", pod, err)
		}
		for _, p := range plan {
			if p.deviceID != "" {
				t.Errorf("pod %q: %s got device %s", pod, p.ifname, p.deviceID)
			}
		}
		if pod == "devfile" && plan[1].devInfoFile == "" {
			t.Error("a plugin declaring CNIDeviceInfoFile got no file path")
		}
	}
	if r.devs.calls != 0 {
		t.Errorf("kubelet asked %d times", r.devs.calls)
	}
	// Needed but kubelet fails: try again later, naming pod and network.
	_, err := r.plan("sriov", nil)
	if err == nil || ToCNIError(err).Code != CodeTryAgainLater || !strings.Contains(err.Error(), "default/sriov") || !strings.Contains(err.Error(), "kubelet is down") {
		t.Errorf("kubelet failing: err = %v", err)
	}
	// Needed but no source at all.
	_, err = newPlanRig(t, true).plan("sriov", nil)
	if err == nil || ToCNIError(err).Code != CodeInvalidConfig || !strings.Contains(err.Error(), vf) {
		t.Errorf("no device source: err = %v", err)
	}
}

// The selection's deviceID: on a NAD without a resource it is passed as
// is; on one with a resource it must be one of the pod's devices and is
// reserved for that attachment.
func TestPlanDevicesPinned(t *testing.T) {
	t.Parallel()
	r := newPlanRig(t, false)
	plan, err := r.plan("pinned", nil)
	if err != nil {
		t.Fatal(err)
	}
	if plan[1].deviceID != "dev7" || plan[2].deviceID != "0000:03:02.2" || plan[3].deviceID != "0000:03:02.1" {
		t.Errorf("devices: net1 %q, net2 %q, net3 %q", plan[1].deviceID, plan[2].deviceID, plan[3].deviceID)
	}
	if got := fmt.Sprint(pluginKeys(t, plan[1], "pciBusID")); got != "[<nil>]" || plan[1].capArgs["deviceID"] != "dev7" || plan[1].devInfoFile != "" {
		t.Errorf("net1: pciBusID %s, capArgs %v, devInfoFile %q", got, plan[1].capArgs, plan[1].devInfoFile)
	}
	r.devs.containers = []devices.Container{{Name: "app", Resources: map[string][]string{vf: {"0000:03:02.1"}}}}
	_, err = r.plan("pinned", nil)
	if err == nil || ToCNIError(err).Code != CodeInvalidSelection || !strings.Contains(err.Error(), `"0000:03:02.2"`) {
		t.Errorf("pinned device not allocated: err = %v", err)
	}
}
