// Command cadvisor is cAdvisor for banyan's Docker end-to-end images, built by scripts/build-cadvisor from
// cAdvisor's library modules (github.com/google/cadvisor and github.com/google/cadvisor/lib), because the Go
// module proxy does not serve its command module (github.com/google/cadvisor/cmd) and Debian packages no
// cAdvisor.
//
// It is a small program of ours, not a copy of upstream's cmd/cadvisor.go: the Docker container handler only,
// the in-memory cache, Prometheus metrics and /healthz. The flags the Docker component passes to the official
// image (components/monitoring/docker.py) mean the same here, so the e2e suite runs the same command line:
// -port, -listen_ip, -prometheus_endpoint, -store_container_labels, -whitelisted_container_labels,
// -enable_metrics / -disable_metrics, and the library's own (-docker_only, -housekeeping_interval, -docker, ...).
// There is no web UI, REST API, storage driver, OOM watcher or profiling.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	// The Docker container handler (the raw cgroup handler is the manager's own).
	_ "github.com/google/cadvisor/container/docker/install"
	"github.com/google/cadvisor/lib/cache/memory"
	"github.com/google/cadvisor/lib/container"
	"github.com/google/cadvisor/lib/manager"
	"github.com/google/cadvisor/lib/metrics"
	info "github.com/google/cadvisor/lib/model"
	"github.com/google/cadvisor/lib/utils/sysfs"
	"github.com/google/cadvisor/lib/version"
)

var (
	listenIP     = flag.String("listen_ip", "", "IP to listen on (all when empty)")
	port         = flag.Int("port", 8080, "port to listen on")
	endpoint     = flag.String("prometheus_endpoint", "/metrics", "path of the Prometheus metrics")
	storeLabels  = flag.Bool("store_container_labels", true, "every container label and env variable as a metric label; when false, only -whitelisted_container_labels")
	allowLabels  = flag.String("whitelisted_container_labels", "", "comma-separated container labels to keep as metric labels (with -store_container_labels=false)")
	rawPrefixes  = flag.String("raw_cgroup_prefix_whitelist", "", "comma-separated cgroup path prefixes collected even with -docker_only")
	envAllowed   = flag.String("env_metadata_whitelist", "", "comma-separated prefixes of container env variables to collect")
	cacheAge     = flag.Duration("storage_duration", 2*time.Minute, "how long samples stay in the in-memory cache")
	printVersion = flag.Bool("version", false, "print the version and exit")

	// What is collected unless -enable_metrics says otherwise: CPU, memory, network and disk I/O, no per-CPU,
	// process, TCP/UDP or hardware-specific series.
	disabled = container.MetricSet{
		container.PerCpuUsageMetrics: {}, container.MemoryNumaMetrics: {}, container.NetworkTcpUsageMetrics: {},
		container.NetworkUdpUsageMetrics: {}, container.NetworkAdvancedTcpUsageMetrics: {},
		container.ProcessSchedulerMetrics: {}, container.ProcessMetrics: {}, container.HugetlbUsageMetrics: {},
		container.ReferencedMemoryMetrics: {}, container.CPUTopologyMetrics: {}, container.ResctrlMetrics: {},
		container.CPUSetMetrics: {}, container.PerfMetrics: {}, container.AppMetrics: {},
		// Counted by upstream's OOM watcher, which the library does not have: it would always read 0.
		container.OOMMetrics: {},
	}
	enabled = container.MetricSet{}
)

func init() {
	flag.Var(&disabled, "disable_metrics", "comma-separated metric kinds not to collect: "+container.AllMetrics.String())
	flag.Var(&enabled, "enable_metrics", "comma-separated metric kinds to collect (overrides -disable_metrics)")
}

// containerLabels: which labels each container's series carry (the library's two label functions).
func containerLabels() metrics.ContainerLabelsFunc {
	if *storeLabels {
		return metrics.DefaultContainerLabels
	}
	var keep []string
	for _, l := range strings.Split(*allowLabels, ",") {
		if l = strings.TrimSpace(l); l != "" {
			keep = append(keep, l)
		}
	}
	return metrics.BaseContainerLabels(keep)
}

func metricsHandler(m manager.Manager, included container.MetricSet) http.Handler {
	labels := containerLabels()
	machine := metrics.NewPrometheusMachineCollector(m, included)
	goRuntime := collectors.NewGoCollector()
	process := collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every container by its cgroup name, the latest sample only.
		opts := info.RequestOptions{IdType: info.TypeName, Count: 1, Recursive: true}
		reg := prometheus.NewRegistry()
		reg.MustRegister(metrics.NewPrometheusCollector(m, labels, included, clock.RealClock{}, opts),
			machine, goRuntime, process)
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}).ServeHTTP(w, r)
	})
}

func main() {
	klog.InitFlags(nil)
	defer klog.Flush()
	flag.Parse()
	if *printVersion {
		fmt.Printf("cAdvisor version %s (%s)\n", version.Info["version"], version.Info["revision"])
		return
	}
	included := container.AllMetrics.Difference(disabled)
	if len(enabled) > 0 {
		included = enabled
	}
	klog.Infof("cAdvisor %s (library build): collecting %s", version.Info["version"], included.String())

	m, err := manager.New(memory.New(*cacheAge, nil), sysfs.NewRealSysFs(), manager.HousekeepingConfigFlags,
		// The library indexes the first prefix: an empty flag is one empty prefix (matches nothing).
		included, strings.Split(*rawPrefixes, ","), strings.Split(*envAllowed, ","), "", 0)
	if err != nil {
		klog.Fatalf("creating the container manager: %v", err)
	}
	if err := m.Start(); err != nil {
		klog.Fatalf("starting the container manager: %v", err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})
	mux.Handle(*endpoint, metricsHandler(m, included))
	srv := &http.Server{Addr: net.JoinHostPort(*listenIP, strconv.Itoa(*port)), Handler: mux,
		ReadHeaderTimeout: 10 * time.Second}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-stop
		klog.Infof("stopping on %v", sig)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	klog.Infof("listening on %s", srv.Addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		klog.Fatalf("serving: %v", err)
	}
	if err := m.Stop(); err != nil {
		klog.Errorf("stopping the container manager: %v", err)
	}
}
