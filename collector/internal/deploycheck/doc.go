// Package deploycheck holds the tests of deploy/: the collector's
// Dockerfile, the compose stack and the Kubernetes manifests. It has no
// code of its own. Its tests read those files as far as a machine without
// Docker or Kubernetes can: they parse them, check them against the
// collector's configuration package and the plugin's Config, check that
// every image is pinned and every mounted file exists, and build the
// binaries with the Dockerfile's own go build lines. With -tags
// integration and TRAEFIK_BIN, the compose stack's Traefik configuration
// and plugin mounts also run in a real Traefik.
package deploycheck
