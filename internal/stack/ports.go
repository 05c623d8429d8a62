package stack

import (
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

// The ports Ports hands out: below Linux's ephemeral range (32768 and up),
// so that no outgoing connection takes one between the pick and the
// server's bind, and above the fixed ports of make up and make demo.
const (
	portLow  = 20000
	portHigh = 32767
)

// ErrNoPort says every port tried was taken.
var ErrNoPort = errors.New("no free port")

// Ports hands out loopback ports that nothing listens on. A port it hands
// out is locked (a lock file in the system's temporary folder) until
// Release, Close or the end of the process, so no other Ports, in this
// process or another, hands it out meanwhile.
type Ports struct {
	dir  string
	mu   sync.Mutex
	held map[int]*os.File
}

// NewPorts returns an allocator; Close releases what it holds.
func NewPorts() (*Ports, error) {
	dir := filepath.Join(os.TempDir(), "llmtap-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, fmt.Errorf("ports: %w", err)
	}
	return &Ports{dir: dir, held: map[int]*os.File{}}, nil
}

// Take returns a port that is free now and locked for the caller.
func (p *Ports) Take() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := rand.Intn(portHigh - portLow + 1)
	for i := 0; i < 400; i++ {
		port := portLow + (start+i*7919)%(portHigh-portLow+1)
		if _, ok := p.held[port]; ok {
			continue
		}
		f, err := p.lock(port)
		if err != nil {
			continue
		}
		if !bindable(port) {
			_ = f.Close()
			continue
		}
		p.held[port] = f
		return port, nil
	}
	return 0, fmt.Errorf("ports %d-%d: %w", portLow, portHigh, ErrNoPort)
}

// TakeN returns n different ports.
func (p *Ports) TakeN(n int) ([]int, error) {
	out := make([]int, 0, n)
	for len(out) < n {
		port, err := p.Take()
		if err != nil {
			return nil, err
		}
		out = append(out, port)
	}
	return out, nil
}

// lock takes the port's lock file without waiting: flock locks conflict
// between open files even within one process.
func (p *Ports) lock(port int) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(p.dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// Release gives a port back.
func (p *Ports) Release(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f, ok := p.held[port]; ok {
		_ = f.Close()
		delete(p.held, port)
	}
}

// Close releases every port.
func (p *Ports) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for port, f := range p.held {
		_ = f.Close()
		delete(p.held, port)
	}
}

// bindable says whether a listener can take 127.0.0.1:port now.
func bindable(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// InUse says whether something accepts connections on 127.0.0.1:port.
func InUse(port int) bool {
	return Answers(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}
