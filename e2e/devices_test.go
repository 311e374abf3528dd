//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/plexus-cni/plexus/agent/podresources"
	"github.com/plexus-cni/plexus/deviceplugin/sysfstest"
	"github.com/plexus-cni/plexus/internal/cluster"
	"github.com/plexus-cni/plexus/internal/testplugins/recorder"
)

// The device plugin runs in the cluster on a fake sysfs tree (no SR-IOV
// hardware here): one PF with four iavf VFs, pooled as plexus.io/fakevf.
// The delegate is the TEST ONLY recorder plugin, which records the
// configuration it received and creates a veth in place of moving a VF.
const (
	fakeResource = "plexus.io/fakevf"
	fakeEnv      = "PCIDEVICE_PLEXUS_IO_FAKEVF"
	// recordDir is under /var/lib/cni, which the agent's pod shares with
	// the host (the recorder runs in the agent's mount namespace).
	recordDir     = "/var/lib/cni/" + cluster.LinkPrefix + "-recorder"
	devInfoCNIDir = "/var/run/k8s.cni.cncf.io/devinfo/cni"
)

var fakeVFs = []string{"0000:3b:02.0", "0000:3b:02.1", "0000:3b:02.2", "0000:3b:02.3"}

// fakeHostRoot is the fake root the device plugin's /host mounts come
// from, set up by setup() before the deploy.
func fakeHostRoot(state string) string { return filepath.Join(state, "fake-host") }

// prepareFakeHost writes the parts of the fake root the device plugin
// needs to start (pci.ids, empty sysfs dirs) and returns the overlay
// patches that point the device plugin at it and pool the fake VFs.
func prepareFakeHost(state string) ([]string, error) {
	root := fakeHostRoot(state)
	for _, d := range []string{"sys/bus/pci/devices", "sys/class/net", "dev", "usr/share/hwdata"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(root, "usr/share/hwdata/pci.ids"), []byte(sysfstest.PCIIDs), 0o644); err != nil {
		return nil, err
	}
	return []string{fmt.Sprintf(`  - target: {kind: DaemonSet, name: plexus-deviceplugin}
    patch: |
      apiVersion: apps/v1
      kind: DaemonSet
      metadata: {name: plexus-deviceplugin, namespace: plexus-system}
      spec:
        template:
          spec:
            volumes:
              - {name: sys, hostPath: {path: %[1]s/sys}}
              - {name: dev, hostPath: {path: %[1]s/dev}}
              - {name: usr-share, hostPath: {path: %[1]s/usr/share}}
  - target: {kind: ConfigMap, name: plexus-deviceplugin-config}
    patch: |
      - op: replace
        path: /data/deviceplugin.yaml
        value: |
          resourcePrefix: plexus.io
          pools:
          - resourceName: fakevf
            deviceType: netdevice
            selectors:
            - drivers: [iavf]
`, root)}, nil
}

var fakeTreeOnce bool

// fakeVFPool fills the fake tree with the PF and its VFs, restarts the
// device plugin so it discovers them, and waits until the node offers them.
func fakeVFPool(t *testing.T) {
	t.Helper()
	if !fakeTreeOnce {
		tr := sysfstest.New(t, fakeHostRoot(env.c.StateDir))
		var vfs []sysfstest.Func
		for i, a := range fakeVFs {
			vfs = append(vfs, sysfstest.Func{Address: a, Vendor: "8086", Device: "154c", Driver: "iavf",
				NUMANode: -1, IOMMUGroup: -1, UIO: -1, Ifname: fmt.Sprintf("fakevf%d", i)})
		}
		tr.AddPF(sysfstest.Func{Address: "0000:3b:00.0", Vendor: "8086", Device: "1572", Driver: "i40e",
			NUMANode: -1, IOMMUGroup: -1, UIO: -1, Ifname: "fakepf0"}, 8, vfs)
		fakeTreeOnce = true
		restartDevicePlugin(t)
	}
	waitAllocatable(t, int64(len(fakeVFs)))
	os.MkdirAll(recordDir, 0o755)
	t.Cleanup(func() { os.RemoveAll(recordDir) })
}

func restartDevicePlugin(t *testing.T) {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=plexus-deviceplugin"}
	if err := env.cs.CoreV1().Pods("plexus-system").DeleteCollection(ctx, metav1.DeleteOptions{}, sel); err != nil {
		t.Fatal(err)
	}
	if err := env.c.WaitDaemonSet(context.Background(), "plexus-system", "plexus-deviceplugin", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
}

func waitAllocatable(t *testing.T, want int64) {
	t.Helper()
	ctx := ctxFor(t, 90*time.Second)
	var have resource.Quantity
	for {
		node, err := env.cs.CoreV1().Nodes().Get(ctx, cluster.NodeName, metav1.GetOptions{})
		if err == nil {
			have = node.Status.Allocatable[corev1.ResourceName(fakeResource)]
			if have.Value() == want {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("node allocatable %s = %s, want %d", fakeResource, have.String(), want)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// vfNAD is a recorder network backed by the fake VF pool.
func vfNAD(t *testing.T, ns, name string, deviceIDCapability bool) {
	caps := ""
	if deviceIDCapability {
		caps = `,"capabilities":{"deviceID":true}`
	}
	nad(t, ns, name, fmt.Sprintf(`{"cniVersion":"1.0.0","name":"%s-%s","type":"plexus-test-recorder","recordDir":%q%s}`,
		cluster.LinkPrefix, name, recordDir, caps), map[string]string{"k8s.v1.cni.cncf.io/resourceName": fakeResource})
}

func withDevices(p *corev1.Pod, perContainer ...int64) *corev1.Pod {
	base := p.Spec.Containers[0]
	p.Spec.Containers = nil
	for i, n := range perContainer {
		c := base
		c.Name = fmt.Sprintf("c%d", i)
		c.Resources.Limits = corev1.ResourceList{corev1.ResourceName(fakeResource): *resource.NewQuantity(n, resource.DecimalSI)}
		p.Spec.Containers = append(p.Spec.Containers, c)
	}
	return p
}

// recorded is what the recorder saw for one interface.
type recorded struct {
	DeviceID      string
	PCIBusID      string
	RuntimeDevice string
	Env           map[string]string
}

func readRecord(t *testing.T, ifname string) recorded {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(recordDir, "*_"+ifname+".json"))
	if len(matches) != 1 {
		t.Fatalf("recorder records for %s: %v, want one", ifname, matches)
	}
	data, err := os.ReadFile(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	var rec recorder.Record
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	var conf struct {
		DeviceID      string `json:"deviceID"`
		PCIBusID      string `json:"pciBusID"`
		RuntimeConfig struct {
			DeviceID string `json:"deviceID"`
		} `json:"runtimeConfig"`
	}
	if err := json.Unmarshal(rec.Stdin, &conf); err != nil {
		t.Fatal(err)
	}
	return recorded{conf.DeviceID, conf.PCIBusID, conf.RuntimeConfig.DeviceID, rec.Env}
}

// containerEnv reads one variable from a running container's environment.
func containerEnv(t *testing.T, p *corev1.Pod, container, name string) string {
	t.Helper()
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name != container {
			continue
		}
		pid := taskPid(t, strings.TrimPrefix(cs.ContainerID, "containerd://"))
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range bytes.Split(data, []byte{0}) {
			if v, ok := strings.CutPrefix(string(kv), name+"="); ok {
				return v
			}
		}
		t.Fatalf("container %s of %s/%s has no %s", container, p.Namespace, p.Name, name)
	}
	t.Fatalf("pod %s/%s has no container %s", p.Namespace, p.Name, container)
	return ""
}

// podResources asks kubelet's PodResources API which devices it gave the
// pod's containers.
func podResources(t *testing.T, p *corev1.Pod) map[string][]string {
	t.Helper()
	c := podresources.New(env.c.PodResourcesSocket(), 5*time.Second)
	defer c.Close()
	conts, err := c.PodDevices(ctxFor(t, 10*time.Second), p.Namespace, p.Name)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, ct := range conts {
		out[ct.Name] = slices.Sorted(slices.Values(ct.Resources[fakeResource]))
	}
	return out
}

func devInfoFiles(t *testing.T) []string {
	m, _ := filepath.Glob(filepath.Join(devInfoCNIDir, "*.json"))
	return m
}

// A pod requesting two devices and selecting two NADs of that resource:
// each delegate gets exactly one of the devices kubelet allocated, in the
// order of the container's PCIDEVICE_* variable; the status carries the
// device-info; DEL removes the device-info files.
func TestDevicesTwoNetworks(t *testing.T) {
	fakeVFPool(t)
	ns := namespace(t, "e2e-dev")
	vfNAD(t, ns, "vfa", true)
	vfNAD(t, ns, "vfb", false)
	filesBefore := len(devInfoFiles(t))
	createPod(t, withDevices(podSpec(ns, "dev", map[string]string{networksAnnot: "vfa,vfb"}), 2))
	waitRunning(t, ns, "dev", runningWithin)
	p, st := waitStatus(t, ns, "dev", 3)

	alloc := podResources(t, p)["c0"]
	envList := strings.Split(containerEnv(t, p, "c0", fakeEnv), ",")
	if len(alloc) != 2 || !slices.Equal(slices.Sorted(slices.Values(envList)), alloc) {
		t.Fatalf("PodResources says %v, the container's %s is %v", alloc, fakeEnv, envList)
	}
	for i, ifname := range []string{"net1", "net2"} {
		r := readRecord(t, ifname)
		if r.DeviceID != envList[i] || r.PCIBusID != envList[i] {
			t.Errorf("%s: delegate got deviceID %q pciBusID %q, want %q (position %d of %s=%v)", ifname, r.DeviceID, r.PCIBusID, envList[i], i, fakeEnv, envList)
		}
		// runtimeConfig.deviceID only where the plugin declares it.
		if wantRT := map[int]string{0: envList[0], 1: ""}[i]; r.RuntimeDevice != wantRT {
			t.Errorf("%s: runtimeConfig.deviceID %q, want %q", ifname, r.RuntimeDevice, wantRT)
		}
		e := st[i+1]
		if e.Interface != ifname || e.DeviceInfo == nil || e.DeviceInfo.Type != "pci" || e.DeviceInfo.Pci == nil || e.DeviceInfo.Pci.PciAddress != envList[i] {
			t.Errorf("%s: network-status %+v, want device-info pci %s", ifname, e, envList[i])
		}
	}
	if n := len(devInfoFiles(t)); n != filesBefore+2 {
		t.Errorf("CNI device-info files: %d, want %d", n, filesBefore+2)
	}
	deletePodsAndWait(t, ctxFor(t, time.Minute), ns)
	deadline := time.Now().Add(30 * time.Second)
	for len(devInfoFiles(t)) != filesBefore && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if n := len(devInfoFiles(t)); n != filesBefore {
		t.Errorf("CNI device-info files after DEL: %d, want %d", n, filesBefore)
	}
}

// Two containers with one device each: net1 gets the first container's
// device, net2 the second's.
func TestDevicesMultiContainer(t *testing.T) {
	fakeVFPool(t)
	ns := namespace(t, "e2e-dev-mc")
	vfNAD(t, ns, "vf", true)
	createPod(t, withDevices(podSpec(ns, "mc", map[string]string{networksAnnot: "vf,vf"}), 1, 1))
	waitRunning(t, ns, "mc", runningWithin)
	p, _ := waitStatus(t, ns, "mc", 3)
	alloc := podResources(t, p)
	for i, ifname := range []string{"net1", "net2"} {
		c := fmt.Sprintf("c%d", i)
		want := containerEnv(t, p, c, fakeEnv)
		if len(alloc[c]) != 1 || alloc[c][0] != want {
			t.Fatalf("container %s: PodResources %v, env %s", c, alloc[c], want)
		}
		if r := readRecord(t, ifname); r.DeviceID != want {
			t.Errorf("%s got %q, want container %s's device %q", ifname, r.DeviceID, c, want)
		}
	}
}

// Kubelet restarts (a new PodResources socket) between a pod's device
// allocation and its ADD: the first ADD fails (its NAD does not exist
// yet), kubelet is restarted, the NAD appears, and the retried ADD, on the
// new kubelet, gets the device allocated before the restart. The agent,
// connected to the old kubelet by an earlier pod, reconnects.
func TestDevicesAfterKubeletRestart(t *testing.T) {
	fakeVFPool(t)
	ns := namespace(t, "e2e-dev-kr")
	vfNAD(t, ns, "vf", true)
	createPod(t, withDevices(podSpec(ns, "before", map[string]string{networksAnnot: "vf"}), 1))
	waitRunning(t, ns, "before", runningWithin)
	waitStatus(t, ns, "before", 2)

	// Admitted (devices allocated), but its ADD fails: no NAD "late" yet.
	createPod(t, withDevices(podSpec(ns, "after", map[string]string{networksAnnot: "late"}), 1))
	waitWarning(t, ns, "after", ns+"/late")

	env.c.StopComponent("kubelet", 15*time.Second)
	vfNAD(t, ns, "late", true)
	os.RemoveAll(recordDir)
	os.MkdirAll(recordDir, 0o755)
	if err := env.c.StartComponent("kubelet"); err != nil {
		t.Fatal(err)
	}
	waitNodeReady(t)
	p := waitRunning(t, ns, "after", runningWithin)
	p, _ = waitStatus(t, ns, "after", 2)
	want := containerEnv(t, p, "c0", fakeEnv)
	if alloc := podResources(t, p)["c0"]; len(alloc) != 1 || alloc[0] != want {
		t.Fatalf("PodResources %v, env %s", alloc, want)
	}
	if r := readRecord(t, "net1"); r.DeviceID != want {
		t.Errorf("after kubelet's restart net1 got %q, want the device allocated before it, %q", r.DeviceID, want)
	}
}

func waitNodeReady(t *testing.T) {
	t.Helper()
	ctx := ctxFor(t, 2*time.Minute)
	for {
		node, err := env.cs.CoreV1().Nodes().Get(ctx, cluster.NodeName, metav1.GetOptions{})
		if err == nil {
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && time.Since(c.LastHeartbeatTime.Time) < 10*time.Second {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("node not Ready after kubelet restart")
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// A NAD whose resource the pod did not request: the sandbox fails and the
// Warning Event names the resource. The NAD is created after the pod, so
// plexus-webhook could not add the request (it warns and admits).
func TestDevicesNotRequested(t *testing.T) {
	fakeVFPool(t)
	ns := namespace(t, "e2e-dev-nr")
	createPod(t, podSpec(ns, "norequest", map[string]string{networksAnnot: "vf"}))
	waitWarning(t, ns, "norequest", ns+"/vf")
	vfNAD(t, ns, "vf", true)
	waitWarning(t, ns, "norequest", fakeResource, "did not request")
}

// More networks of a resource than devices allocated: the sandbox fails
// and the Warning Event gives both counts. The NAD comes after the pod,
// as above, or the webhook would raise the request to 2.
func TestDevicesTooFew(t *testing.T) {
	fakeVFPool(t)
	ns := namespace(t, "e2e-dev-few")
	createPod(t, withDevices(podSpec(ns, "few", map[string]string{networksAnnot: "vf,vf"}), 1))
	waitWarning(t, ns, "few", ns+"/vf")
	vfNAD(t, ns, "vf", true)
	waitWarning(t, ns, "few", fakeResource, "selects 2 networks", "allocated 1")
}

// waitWarning waits for the Warning Event plexus-agent records when the
// pod's networks fail (ErrorAddingNetwork), with every one of parts in its
// message, and checks the pod is not Running.
func waitWarning(t *testing.T, ns, pod string, parts ...string) {
	t.Helper()
	e := waitAgentEvent(t, ns, pod, corev1.EventTypeWarning, "ErrorAddingNetwork", parts...)
	if p := mustGetPod(t, ns, pod); p.Status.Phase == corev1.PodRunning {
		t.Fatalf("pod %s/%s Running despite: %s", ns, pod, e.Message)
	}
}
