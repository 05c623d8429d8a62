//go:build tools

// Package traefik only pins the Traefik module for scripts/traefik-build.sh.
package traefik

import _ "github.com/traefik/traefik/v3/cmd/traefik"
