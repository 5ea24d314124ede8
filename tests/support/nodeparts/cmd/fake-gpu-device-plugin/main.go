// Command fake-gpu-device-plugin advertises N fake GPUs to the kubelet over its real
// device-plugin API (k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1), so pods that request
// nvidia.com/gpu get scheduled, admitted and started on a node without a GPU.
//
// Allocate hands a container only NVIDIA_VISIBLE_DEVICES: no device nodes, no mounts, since
// there is no GPU behind the ids; the trainer falls back to the CPU.
//
// The kubelet removes every socket in the plugin dir when it starts, so whenever kubelet.sock
// is recreated the plugin serves on a fresh socket and registers again.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

type config struct {
	resource  string
	count     int
	pluginDir string
	endpoint  string        // the plugin's socket, a name inside pluginDir
	poll      time.Duration // how often kubelet.sock is checked for a kubelet restart
}

func main() {
	cfg := config{poll: time.Second}
	flag.StringVar(&cfg.resource, "resource", "nvidia.com/gpu", "extended resource name to advertise")
	flag.IntVar(&cfg.count, "count", 4, "number of fake devices")
	flag.StringVar(&cfg.pluginDir, "plugin-dir", pluginapi.DevicePluginPath,
		"the kubelet's device-plugin dir, where kubelet.sock is (fixed in the kubelet, not under --root-dir)")
	flag.StringVar(&cfg.endpoint, "endpoint", "dreambooth-fake-gpu.sock", "socket name to serve on, inside --plugin-dir")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.SetPrefix("fake-gpu-device-plugin: ")

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		log.Printf("error: %v", err)
		os.Exit(1)
	}
	log.Printf("stopped")
}

// run keeps the plugin served and registered with whichever kubelet owns kubelet.sock until
// ctx ends, then stops serving and removes its socket.
func run(ctx context.Context, cfg config) error {
	plugin := newPlugin(cfg.resource, cfg.count)
	kubeletSocket := filepath.Join(cfg.pluginDir, filepath.Base(pluginapi.KubeletSocket))
	socket := filepath.Join(cfg.pluginDir, cfg.endpoint)
	var server *grpc.Server
	defer func() {
		if server != nil {
			server.Stop()
		}
		os.Remove(socket)
	}()

	var registeredWith socketIdentity
	registrations := 0
	ticker := time.NewTicker(cfg.poll)
	defer ticker.Stop()
	for {
		kubelet, err := identify(kubeletSocket)
		_, ownErr := os.Stat(socket)
		if err == nil && (kubelet != registeredWith || ownErr != nil) {
			if server != nil {
				server.Stop() // ends the old kubelet's ListAndWatch stream
			}
			if server, err = serve(plugin, socket); err != nil {
				return err
			}
			if err := register(ctx, kubeletSocket, cfg); ctx.Err() != nil {
				return nil
			} else if err != nil {
				log.Printf("register with %s failed, retrying: %v", kubeletSocket, err)
			} else {
				registeredWith = kubelet
				registrations++
				verb := "registered"
				if registrations > 1 {
					verb = "re-registered"
				}
				log.Printf("%s %d %s on %s with %s", verb, cfg.count, cfg.resource, socket, kubeletSocket)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// socketIdentity tells a recreated kubelet.sock from the old one even when the filesystem
// hands the new file the same inode number.
type socketIdentity struct {
	dev, ino uint64
	ctime    syscall.Timespec
}

func identify(path string) (socketIdentity, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return socketIdentity{}, err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFSOCK {
		return socketIdentity{}, fmt.Errorf("%s is not a socket", path)
	}
	return socketIdentity{dev: uint64(st.Dev), ino: st.Ino, ctime: st.Ctim}, nil
}

func serve(plugin *plugin, socket string) (*grpc.Server, error) {
	if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	listener, err := net.Listen("unix", socket)
	if err != nil {
		return nil, err
	}
	server := grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(server, plugin)
	go server.Serve(listener) //nolint:errcheck // returns when Stop closes the listener
	return server, nil
}

func register(ctx context.Context, kubeletSocket string, cfg config) error {
	conn, err := grpc.NewClient("unix://"+kubeletSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     cfg.endpoint,
		ResourceName: cfg.resource,
		Options:      &pluginapi.DevicePluginOptions{},
	})
	return err
}

type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	resource string
	devices  []*pluginapi.Device
	known    map[string]bool
}

func newPlugin(resource string, count int) *plugin {
	p := &plugin{resource: resource, known: map[string]bool{}}
	for i := range count {
		id := fmt.Sprintf("fake-gpu-%d", i)
		p.devices = append(p.devices, &pluginapi.Device{ID: id, Health: pluginapi.Healthy})
		p.known[id] = true
	}
	return p
}

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

// ListAndWatch sends every device once, healthy; fake devices never change.
func (p *plugin) ListAndWatch(_ *pluginapi.Empty, stream grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: p.devices}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

func (p *plugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	resp := &pluginapi.AllocateResponse{}
	for _, container := range req.ContainerRequests {
		for _, id := range container.DevicesIds {
			if !p.known[id] {
				return nil, fmt.Errorf("unknown %s device %q", p.resource, id)
			}
		}
		ids := strings.Join(container.DevicesIds, ",")
		log.Printf("allocate %s", ids)
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Envs: map[string]string{"NVIDIA_VISIBLE_DEVICES": ids},
		})
	}
	return resp, nil
}

// GetPreferredAllocation is not advertised in the options; answered anyway with the devices
// the kubelet must include, topped up from the available ones in order.
func (p *plugin) GetPreferredAllocation(_ context.Context, req *pluginapi.PreferredAllocationRequest) (*pluginapi.PreferredAllocationResponse, error) {
	resp := &pluginapi.PreferredAllocationResponse{}
	for _, container := range req.ContainerRequests {
		ids := append([]string(nil), container.MustIncludeDeviceIDs...)
		for _, id := range container.AvailableDeviceIDs {
			if len(ids) >= int(container.AllocationSize) {
				break
			}
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerPreferredAllocationResponse{DeviceIDs: ids})
	}
	return resp, nil
}

func (p *plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}
