// Package sdk streams through the llmtap plugin, loaded by a real Traefik,
// with the providers' official Go SDKs (openai-go, anthropic-sdk-go) against
// the mock upstream, and holds the plugin to what they need: every event
// arrives, the body is the one the upstream sent, byte for byte, and the
// record says so. The tests carry the e2e build tag, like the root
// module's.
package sdk
