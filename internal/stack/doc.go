// Package stack starts llmtap's real parts (ClickHouse, Redis, ZooKeeper,
// Prometheus, the collector, the mock LLM upstream and Traefik with the
// plugin from the checkout) as plain processes on loopback, for the tests,
// the soak, the benchmarks and cmd/llmtap-stack (make up, down, demo).
//
// Each part is a value: its options in, Start (which returns once Ready
// answers), Ready, Stop. Configurations are written from typed values, each
// by one function (the collector's by CollectorConfig.Write). Ports come
// from Ports, which never hands a port out twice, even to another process.
// A Stack starts parts in order and stops them in reverse within one
// deadline; Start(t, ...) ties a stack to a test, so a failed test stops
// what it started, and a test binary that dies takes its processes with it
// (they get SIGKILL when it exits).
//
// Standard library only: the root module must require nothing.
package stack
