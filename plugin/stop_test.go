//go:build !yaegi
// +build !yaegi

package llmtap

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// TestStopSignalSendsWhatIsHeld: when the process is told to stop, the
// records waiting for their batch's flush interval are sent at once, and
// the signal is handed on to whoever else listens for it. Compiled only:
// the test raises SIGTERM through syscall, which Traefik's interpreter
// lacks; e2e's TestTraefikStopSendsWhatIsHeld does it to a real Traefik.
func TestStopSignalSendsWhatIsHeld(t *testing.T) {
	if got := stopSignals(); len(got) != 2 || got[0] != os.Interrupt || got[1] != syscall.SIGTERM {
		t.Fatalf("stopSignals() = %v, want interrupt and SIGTERM", got)
	}
	// Stands for Traefik's own handler: without one, the signal handed
	// on would end the test process.
	host := make(chan os.Signal, 4)
	signal.Notify(host, syscall.SIGTERM)
	defer signal.Stop(host)

	col := newCollectorStub(t)
	c := reloadConfig(col.srv.URL, 1000, "1h") // nothing is sent before the signal
	h, _ := load(t, holdingHandler(nil), c, "stop")
	const n = 20
	for i := 0; i < n; i++ {
		serveOne(h, "/v1/chat/completions", fmt.Sprintf("stop-%02d", i))
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ids := recordIDs(t, col, n)
	for i := 0; i < n; i++ {
		if id := fmt.Sprintf("stop-%02d", i); ids[id] != 1 {
			t.Errorf("record %s received %d times, want once", id, ids[id])
		}
	}
	// The host's handler gets the signal, then the one the plugin raises
	// again once it has stopped listening.
	for i := 1; i <= 2; i++ {
		select {
		case <-host:
		case <-time.After(10 * time.Second):
			t.Fatalf("signal %d of 2 did not reach the process's own handler: the plugin did not hand it on", i)
		}
	}
	// The next middleware gets a new sender, and a new watcher.
	h, _ = load(t, holdingHandler(nil), reloadConfig(col.srv.URL, 1, "10ms"), "stop")
	serveOne(h, "/v1/chat/completions", "after-stop")
	if ids := recordIDs(t, col, n+1); ids["after-stop"] != 1 {
		t.Errorf("a record after the stop signal: received %d times, want once", ids["after-stop"])
	}
}
