// Command memberlist-peer runs one HashiCorp memberlist member and prints
// what it learns about the others as JSON lines, in the shape that
// `trio-swim run --json` prints, so that benchmarks/udp_cluster.py reads
// both with one parser:
//
//	{"time": "2026-12-01T22:05:01.123Z", "member": "127.0.0.1:17000",
//	 "event": "status", "node": "127.0.0.1:17001", "status": "suspect",
//	 "previous": "alive", "incarnation": 3}
//	{"time": ..., "member": ..., "event": "removed", "node": "127.0.0.1:17001",
//	 "status": "dead", "incarnation": 3}
//
// "time" is when the driver noticed the change (UTC, milliseconds) and
// "member" the address of the member that saw it.
//
// Each member is named by its own address, so "node" is an address as in
// trio_swim's events. Logs go to stderr. SIGINT or SIGTERM leaves the
// cluster (waiting at most -leave-timeout) and exits 0.
//
// memberlist's EventDelegate reports joins and departures but not
// suspicion, nor whether a departure was a death or a leave. So the driver
// reads the state memberlist keeps of every node (the unexported nodes
// table of memberlist 0.2.x, read with reflect under memberlist's own read
// lock) whenever memberlist counts an alive, suspect or dead message in its
// metrics (the only calls it makes where a node's state changes), and once
// a second to notice removals. It prints every difference from the last
// table it printed. Nothing is polled in between, so the driver adds almost
// no CPU time to an idle member.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	metrics "github.com/armon/go-metrics"
	"github.com/hashicorp/memberlist"
)

// joinAttempts bounds the joining loop; with the backoff below it lasts
// about a minute at most.
const (
	joinAttempts    = 40
	joinBackoffMin  = 100 * time.Millisecond
	joinBackoffMax  = 2 * time.Second
	removalInterval = time.Second
	rfc3339Millis   = "2006-01-02T15:04:05.000Z"
)

type addressList []string

func (a *addressList) String() string { return strings.Join(*a, ",") }

func (a *addressList) Set(value string) error {
	if _, _, err := net.SplitHostPort(value); err != nil {
		return err
	}
	*a = append(*a, value)
	return nil
}

// nodeView is what the driver last printed about one node.
type nodeView struct {
	status      string
	incarnation uint32
}

type statusLine struct {
	Time        string  `json:"time"`
	Member      string  `json:"member"`
	Event       string  `json:"event"`
	Node        string  `json:"node"`
	Status      string  `json:"status"`
	Previous    *string `json:"previous"`
	Incarnation uint32  `json:"incarnation"`
}

type removedLine struct {
	Time        string `json:"time"`
	Member      string `json:"member"`
	Event       string `json:"event"`
	Node        string `json:"node"`
	Status      string `json:"status"`
	Incarnation uint32 `json:"incarnation"`
}

var statusNames = map[memberlist.NodeStateType]string{
	memberlist.StateAlive:   "alive",
	memberlist.StateSuspect: "suspect",
	memberlist.StateDead:    "dead",
	memberlist.StateLeft:    "left",
}

// table gives read access to memberlist's unexported node table.
type table struct {
	lock  *sync.RWMutex
	nodes reflect.Value // []*nodeState
}

// openTable finds the fields of memberlist 0.2.x this driver reads, or says
// which one is missing.
func openTable(m *memberlist.Memberlist) (*table, error) {
	v := reflect.ValueOf(m).Elem()
	lock := v.FieldByName("nodeLock")
	if !lock.IsValid() || lock.Type() != reflect.TypeOf(sync.RWMutex{}) {
		return nil, fmt.Errorf("memberlist.Memberlist has no nodeLock sync.RWMutex")
	}
	nodes := v.FieldByName("nodes")
	if !nodes.IsValid() || nodes.Kind() != reflect.Slice || nodes.Type().Elem().Kind() != reflect.Ptr {
		return nil, fmt.Errorf("memberlist.Memberlist has no nodes []*nodeState")
	}
	state := nodes.Type().Elem().Elem()
	for name, kind := range map[string]reflect.Kind{
		"Name": reflect.String, "State": reflect.Int, "Incarnation": reflect.Uint32,
	} {
		field, ok := state.FieldByName(name)
		if !ok || field.Type.Kind() != kind {
			return nil, fmt.Errorf("memberlist's nodeState has no %s of kind %s", name, kind)
		}
	}
	return &table{lock: (*sync.RWMutex)(unsafe.Pointer(lock.UnsafeAddr())), nodes: nodes}, nil
}

// snapshot copies every node's name, state and incarnation.
func (t *table) snapshot() map[string]nodeView {
	t.lock.RLock()
	defer t.lock.RUnlock()
	out := make(map[string]nodeView, t.nodes.Len())
	for i := 0; i < t.nodes.Len(); i++ {
		node := t.nodes.Index(i).Elem()
		status, ok := statusNames[memberlist.NodeStateType(node.FieldByName("State").Int())]
		if !ok {
			status = "unknown"
		}
		out[node.FieldByName("Name").String()] = nodeView{
			status:      status,
			incarnation: uint32(node.FieldByName("Incarnation").Uint()),
		}
	}
	return out
}

// reporter prints the differences between successive snapshots.
type reporter struct {
	self    string
	wake    chan struct{}
	printed map[string]nodeView
	out     *bufio.Writer
	table   *table
}

// poke asks for a new snapshot; it never blocks (memberlist holds its node
// lock while it calls the metrics sink and the event delegate).
func (r *reporter) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *reporter) run() {
	ticker := time.NewTicker(removalInterval)
	defer ticker.Stop()
	for {
		select {
		case <-r.wake:
		case <-ticker.C:
		}
		if r.table != nil {
			r.report(r.table.snapshot())
		}
	}
}

func (r *reporter) report(now map[string]nodeView) {
	encoder := json.NewEncoder(r.out)
	stamp := time.Now().UTC().Format(rfc3339Millis)
	for name, view := range now {
		if name == r.self {
			continue
		}
		before, known := r.printed[name]
		if known && before.status == view.status {
			continue
		}
		line := statusLine{
			Time: stamp, Member: r.self, Event: "status", Node: name, Status: view.status,
			Incarnation: view.incarnation,
		}
		if known {
			previous := before.status
			line.Previous = &previous
		}
		_ = encoder.Encode(line)
		r.printed[name] = view
	}
	for name, before := range r.printed {
		if _, still := now[name]; !still {
			_ = encoder.Encode(removedLine{
				stamp, r.self, "removed", name, before.status, before.incarnation,
			})
			delete(r.printed, name)
		}
	}
	if err := r.out.Flush(); err != nil {
		log.Printf("stdout: %v", err)
		os.Exit(1)
	}
}

// events pokes the reporter on every join, departure and update.
type events struct{ r *reporter }

func (e events) NotifyJoin(*memberlist.Node)   { e.r.poke() }
func (e events) NotifyLeave(*memberlist.Node)  { e.r.poke() }
func (e events) NotifyUpdate(*memberlist.Node) { e.r.poke() }

// sink pokes the reporter when memberlist counts a state message; every
// other metric is dropped.
type sink struct{ r *reporter }

func (s sink) SetGauge([]string, float32)                                       {}
func (s sink) SetGaugeWithLabels([]string, float32, []metrics.Label)            {}
func (s sink) EmitKey([]string, float32)                                        {}
func (s sink) AddSample([]string, float32)                                      {}
func (s sink) AddSampleWithLabels([]string, float32, []metrics.Label)           {}
func (s sink) IncrCounter(key []string, value float32)                          { s.count(key) }
func (s sink) IncrCounterWithLabels(key []string, _ float32, _ []metrics.Label) { s.count(key) }

func (s sink) count(key []string) {
	if n := len(key); n >= 3 && key[n-3] == "memberlist" && key[n-2] == "msg" {
		s.r.poke()
	}
}

// quietWriter drops memberlist's [DEBUG] lines unless asked for them.
type quietWriter struct {
	w     io.Writer
	debug bool
}

func (q quietWriter) Write(p []byte) (int, error) {
	if !q.debug && strings.Contains(string(p), "[DEBUG]") {
		return len(p), nil
	}
	return q.w.Write(p)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:7946", "IP:PORT to bind (UDP and TCP) and advertise; also the member's name")
	var joins addressList
	flag.Var(&joins, "join", "IP:PORT of a member to join; repeat for several")
	probeInterval := flag.Duration("probe-interval", 250*time.Millisecond, "ProbeInterval (DefaultLANConfig: 1s)")
	probeTimeout := flag.Duration("probe-timeout", 100*time.Millisecond, "ProbeTimeout (DefaultLANConfig: 500ms)")
	leaveTimeout := flag.Duration("leave-timeout", 500*time.Millisecond, "how long leaving waits for the broadcast")
	debug := flag.Bool("debug-log", false, "also print memberlist's [DEBUG] log lines")
	noReport := flag.Bool("no-report", false, "print no events (to measure what reporting them costs)")
	flag.Parse()

	logger := log.New(quietWriter{os.Stderr, *debug}, "", log.LstdFlags|log.Lmicroseconds)
	host, portText, err := net.SplitHostPort(*listen)
	if err != nil {
		logger.Fatalf("-listen %q: %v", *listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port <= 0 || port > 65535 {
		logger.Fatalf("-listen %q: bad port", *listen)
	}

	r := &reporter{
		self:    *listen,
		wake:    make(chan struct{}, 1),
		printed: map[string]nodeView{},
		out:     bufio.NewWriter(os.Stdout),
	}
	if !*noReport {
		metricsConfig := metrics.DefaultConfig("")
		metricsConfig.EnableHostname = false
		metricsConfig.EnableRuntimeMetrics = false
		if _, err := metrics.NewGlobal(metricsConfig, sink{r}); err != nil {
			logger.Fatalf("metrics: %v", err)
		}
	}

	config := memberlist.DefaultLANConfig()
	config.Name = *listen
	config.BindAddr, config.BindPort = host, port
	config.AdvertiseAddr, config.AdvertisePort = host, port
	config.ProbeInterval = *probeInterval
	config.ProbeTimeout = *probeTimeout
	if !*noReport {
		config.Events = events{r}
	}
	config.Logger = logger

	m, err := memberlist.Create(config)
	if err != nil {
		logger.Fatalf("create: %v", err)
	}
	if r.table, err = openTable(m); err != nil {
		logger.Fatalf("this driver reads memberlist 0.2.x internals: %v", err)
	}
	if !*noReport {
		go r.run()
		r.poke()
	}
	logger.Printf("listening on %s (probe interval %v, probe timeout %v)", *listen, *probeInterval, *probeTimeout)

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	if len(joins) > 0 {
		go join(m, joins, logger)
	}
	received := <-signals
	logger.Printf("received %v, leaving the cluster", received)
	if err := m.Leave(*leaveTimeout); err != nil {
		logger.Printf("leave: %v", err)
	}
	if err := m.Shutdown(); err != nil {
		logger.Printf("shutdown: %v", err)
	}
	logger.Printf("left")
}

// join retries with backoff until some member answers, a bounded number of times.
func join(m *memberlist.Memberlist, addresses []string, logger *log.Logger) {
	backoff := joinBackoffMin
	for attempt := 1; attempt <= joinAttempts; attempt++ {
		contacted, err := m.Join(addresses)
		if contacted > 0 {
			logger.Printf("joined through %d of %s", contacted, strings.Join(addresses, ","))
			return
		}
		logger.Printf("join attempt %d: %v", attempt, err)
		time.Sleep(backoff)
		if backoff *= 2; backoff > joinBackoffMax {
			backoff = joinBackoffMax
		}
	}
	logger.Printf("gave up joining %s", strings.Join(addresses, ","))
}
