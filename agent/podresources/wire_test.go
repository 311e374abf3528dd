package podresources

import (
	"errors"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"
	v1 "k8s.io/kubelet/pkg/apis/podresources/v1"
)

// The hand-written decoder against protobuf-go's encoding of kubelet's own
// types, with every field kubelet may send, read or not.
func TestWireMatchesKubeletTypes(t *testing.T) {
	topo := &v1.TopologyInfo{Nodes: []*v1.NUMANode{{ID: 0}, {ID: 1}}}
	pod := func(ns, name string) *v1.PodResources {
		return &v1.PodResources{
			Name: name, Namespace: ns,
			CpuIds: []int64{4, 5},
			Memory: []*v1.ContainerMemory{{MemoryType: "memory", Size: 1 << 30, Topology: topo}},
			Containers: []*v1.ContainerResources{
				{Name: "init", Devices: []*v1.ContainerDevices{{ResourceName: "example.com/vf", DeviceIds: []string{"0000:03:02.3"}, Topology: topo}}},
				{
					Name: "app",
					Devices: []*v1.ContainerDevices{
						{ResourceName: "example.com/vf", DeviceIds: []string{"0000:03:02.1", "0000:03:02.2"}},
						{ResourceName: "other.com/gpu", DeviceIds: []string{"gpu0"}},
					},
					CpuIds: []int64{1, 2, 3},
					Memory: []*v1.ContainerMemory{{MemoryType: "hugepages-2Mi", Size: 2 << 20}},
					DynamicResources: []*v1.DynamicResource{{ClaimName: "c", ClaimNamespace: ns, ClaimResources: []*v1.ClaimResource{
						{CdiDevices: []*v1.CDIDevice{{Name: "vendor.com/dev=x"}}, DriverName: "d", PoolName: "p", DeviceName: "x"},
					}}},
				},
				{Name: "plain"},
			},
		}
	}
	want := &podResources{name: "p", namespace: "ns1", containers: []containerResources{
		{name: "init", devices: []containerDevices{{resource: "example.com/vf", ids: []string{"0000:03:02.3"}}}},
		{name: "app", devices: []containerDevices{
			{resource: "example.com/vf", ids: []string{"0000:03:02.1", "0000:03:02.2"}},
			{resource: "other.com/gpu", ids: []string{"gpu0"}},
		}},
		{name: "plain"},
	}}

	get, err := proto.Marshal(&v1.GetPodResourcesResponse{PodResources: pod("ns1", "p")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseGetResponse(get)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Get response: %+v, %v; want %+v", got, err, want)
	}
	if got, err := parseGetResponse(nil); got != nil || err != nil {
		t.Errorf("empty Get response: %+v, %v; want nil, nil", got, err)
	}

	list, err := proto.Marshal(&v1.ListPodResourcesResponse{PodResources: []*v1.PodResources{pod("ns2", "p"), pod("ns1", "q"), pod("ns1", "p")}})
	if err != nil {
		t.Fatal(err)
	}
	got, err = parseListResponse(list, "ns1", "p")
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("List response: %+v, %v; want %+v", got, err, want)
	}
	if got, err := parseListResponse(list, "ns1", "ghost"); got != nil || err != nil {
		t.Errorf("pod not listed: %+v, %v; want nil, nil", got, err)
	}

	var req v1.GetPodResourcesRequest
	if err := proto.Unmarshal(appendGetRequest(nil, "ns1", "p"), &req); err != nil || req.PodNamespace != "ns1" || req.PodName != "p" {
		t.Errorf("Get request decodes as %v, %v", &req, err)
	}

	for _, n := range []int{1, len(get) / 2, len(get) - 1} {
		if _, err := parseGetResponse(get[:n]); !errors.Is(err, errWire) {
			t.Errorf("response cut at %d of %d bytes: err = %v, want errWire", n, len(get), err)
		}
	}
}
