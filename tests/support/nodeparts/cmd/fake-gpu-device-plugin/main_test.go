package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// registry stands in for the kubelet's side of registration: a real gRPC RegistrationServer
// on <dir>/kubelet.sock that, like the kubelet, dials the plugin back before answering.
type registry struct {
	pluginapi.UnimplementedRegistrationServer
	dir      string
	requests chan *pluginapi.RegisterRequest
}

func (r *registry) Register(ctx context.Context, req *pluginapi.RegisterRequest) (*pluginapi.Empty, error) {
	conn := dial(r.dir, req.Endpoint)
	defer conn.Close()
	if _, err := pluginapi.NewDevicePluginClient(conn).GetDevicePluginOptions(ctx, &pluginapi.Empty{}); err != nil {
		return nil, err
	}
	r.requests <- req
	return &pluginapi.Empty{}, nil
}

// startKubelet serves the registry on kubelet.sock after removing every other socket in the
// dir, as the kubelet's device manager does when it starts.
func startKubelet(t *testing.T, r *registry) *grpc.Server {
	t.Helper()
	entries, _ := os.ReadDir(r.dir)
	for _, entry := range entries {
		if entry.Type()&os.ModeSocket != 0 {
			os.Remove(filepath.Join(r.dir, entry.Name()))
		}
	}
	listener, err := net.Listen("unix", filepath.Join(r.dir, "kubelet.sock"))
	if err != nil {
		t.Fatal(err)
	}
	server := grpc.NewServer()
	pluginapi.RegisterRegistrationServer(server, r)
	go server.Serve(listener) //nolint:errcheck
	return server
}

func dial(dir, endpoint string) *grpc.ClientConn {
	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, endpoint), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	return conn
}

func nextRegistration(t *testing.T, r *registry) *pluginapi.RegisterRequest {
	t.Helper()
	select {
	case req := <-r.requests:
		return req
	case <-time.After(10 * time.Second):
		t.Fatal("the plugin did not register")
		return nil
	}
}

func TestRegistersServesAndReregisters(t *testing.T) {
	dir, err := os.MkdirTemp("", "fgdp") // short: a unix socket path is limited to 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	r := &registry{dir: dir, requests: make(chan *pluginapi.RegisterRequest, 4)}
	kubelet := startKubelet(t, r)

	cfg := config{resource: "nvidia.com/gpu", count: 4, pluginDir: dir, endpoint: "fake-gpu.sock", poll: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg) }()

	req := nextRegistration(t, r)
	if req.Version != "v1beta1" || req.Endpoint != "fake-gpu.sock" || req.ResourceName != "nvidia.com/gpu" {
		t.Fatalf("register request = %v", req)
	}

	conn := dial(dir, req.Endpoint)
	defer conn.Close()
	client := pluginapi.NewDevicePluginClient(conn)
	stream, err := client.ListAndWatch(ctx, &pluginapi.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	list, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Devices) != 4 {
		t.Fatalf("ListAndWatch sent %d devices, want 4", len(list.Devices))
	}
	for _, device := range list.Devices {
		if device.Health != pluginapi.Healthy {
			t.Fatalf("device %s is %s", device.ID, device.Health)
		}
	}

	ids := []string{list.Devices[1].ID, list.Devices[3].ID}
	resp, err := client.Allocate(ctx, &pluginapi.AllocateRequest{
		ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: ids}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.ContainerResponses) != 1 {
		t.Fatalf("Allocate answered %d containers, want 1", len(resp.ContainerResponses))
	}
	got := resp.ContainerResponses[0]
	if len(got.Envs) != 1 || got.Envs["NVIDIA_VISIBLE_DEVICES"] != ids[0]+","+ids[1] {
		t.Fatalf("Allocate envs = %v", got.Envs)
	}
	if len(got.Devices) != 0 || len(got.Mounts) != 0 || len(got.Annotations) != 0 || got.CdiDevices != nil {
		t.Fatalf("Allocate should hand out only the env, got %v", got)
	}
	if _, err := client.Allocate(ctx, &pluginapi.AllocateRequest{
		ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: []string{"no-such-gpu"}}},
	}); err == nil {
		t.Fatal("Allocate of an unknown device succeeded")
	}

	// A kubelet restart: the old one goes away, the new one wipes the plugin's socket and
	// serves a new kubelet.sock. The plugin must come back on its socket and register again.
	kubelet.Stop()
	kubelet = startKubelet(t, r)
	defer kubelet.Stop()
	if req := nextRegistration(t, r); req.Endpoint != "fake-gpu.sock" {
		t.Fatalf("re-register request = %v", req)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "fake-gpu.sock")); !os.IsNotExist(err) {
		t.Fatalf("plugin socket left behind after shutdown: %v", err)
	}
}
