package server

// The device plugin gRPC API kubelet calls. Allocate takes p.mu only to
// read the device map; the Device Info files are written outside it.

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pb "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/plexus-cni/plexus/deviceplugin/allocate"
	"github.com/plexus-cni/plexus/deviceplugin/discovery"
	"github.com/plexus-cni/plexus/devinfo"
)

func options() *pb.DevicePluginOptions {
	return &pb.DevicePluginOptions{GetPreferredAllocationAvailable: true}
}

// snapshot returns the device list to send and the channel that closes on
// the next change.
func (p *Plugin) snapshot() (*pb.ListAndWatchResponse, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	resp := &pb.ListAndWatchResponse{Devices: make([]*pb.Device, 0, len(p.devs))}
	for _, d := range p.cfg.Pool.Devices {
		h := pb.Healthy
		if p.health[d.Address] != "" {
			h = pb.Unhealthy
		}
		dev := &pb.Device{ID: d.Address, Health: h}
		if d.NUMANode >= 0 {
			dev.Topology = &pb.TopologyInfo{Nodes: []*pb.NUMANode{{ID: int64(d.NUMANode)}}}
		}
		resp.Devices = append(resp.Devices, dev)
	}
	return resp, p.changed
}

// GetDevicePluginOptions implements the device plugin API.
func (p *Plugin) GetDevicePluginOptions(context.Context, *pb.Empty) (*pb.DevicePluginOptions, error) {
	return options(), nil
}

// ListAndWatch sends the device list, then again on every health change,
// until kubelet hangs up or the plugin stops.
func (p *Plugin) ListAndWatch(_ *pb.Empty, stream grpc.ServerStreamingServer[pb.ListAndWatchResponse]) error {
	p.mu.Lock()
	done := p.ctx.Done()
	p.mu.Unlock()
	for {
		resp, changed := p.snapshot()
		if err := stream.Send(resp); err != nil {
			return fmt.Errorf("send device list: %w", err)
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		case <-done:
			return nil
		}
	}
}

// PreStartContainer is never called (PreStartRequired is false) but
// answers rather than failing should a kubelet call it anyway.
func (p *Plugin) PreStartContainer(context.Context, *pb.PreStartContainerRequest) (*pb.PreStartContainerResponse, error) {
	return &pb.PreStartContainerResponse{}, nil
}

// GetPreferredAllocation keeps each request on one NUMA node and spreads
// or packs it across PFs per the pool's allocationPolicy.
func (p *Plugin) GetPreferredAllocation(_ context.Context, req *pb.PreferredAllocationRequest) (*pb.PreferredAllocationResponse, error) {
	devs := p.devices()
	resp := &pb.PreferredAllocationResponse{}
	for _, cr := range req.GetContainerRequests() {
		for _, id := range append(cr.GetAvailableDeviceIDs(), cr.GetMustIncludeDeviceIDs()...) {
			if _, ok := devs[id]; !ok {
				return nil, status.Errorf(codes.InvalidArgument, "device %q is not in pool %s", id, p.ResourceName())
			}
		}
		ids := allocate.Preferred(cr.GetAvailableDeviceIDs(), cr.GetMustIncludeDeviceIDs(), int(cr.GetAllocationSize()), devs, p.cfg.Pool.Spec.AllocationPolicy)
		resp.ContainerResponses = append(resp.ContainerResponses, &pb.ContainerPreferredAllocationResponse{DeviceIDs: ids})
	}
	return resp, nil
}

// Allocate returns env, device nodes, mounts and CDI devices, and writes
// device info files.
func (p *Plugin) Allocate(_ context.Context, req *pb.AllocateRequest) (*pb.AllocateResponse, error) {
	spec := p.cfg.Pool.Spec
	devs := p.devices()
	resp := &pb.AllocateResponse{}
	for _, cr := range req.GetContainerRequests() {
		c, err := allocate.Container(&spec, cr.GetDevicesIds(), devs)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		// Held from now on, before its file exists, so that a Stop
		// racing with this call keeps the file.
		p.cfg.InUse.Allocated(p.ResourceName(), cr.GetDevicesIds())
		if err := p.writeDevInfo(devs, cr.GetDevicesIds()); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		resp.ContainerResponses = append(resp.ContainerResponses, c)
	}
	p.log.Debug("allocated", "containers", len(resp.ContainerResponses))
	return resp, nil
}

func (p *Plugin) writeDevInfo(devs map[string]discovery.Device, ids []string) error {
	if p.cfg.DevInfoDir == "" {
		return nil
	}
	for _, id := range ids {
		d := devs[id]
		if _, err := devinfo.WritePCI(p.cfg.DevInfoDir, p.ResourceName(), d.Address, d.PFAddress); err != nil {
			return err
		}
	}
	return nil
}
