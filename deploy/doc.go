// Package deploy holds example configurations for running authsvc behind an
// HTTP gateway: nginx (auth_request), Caddy (forward_auth), Traefik
// (forwardAuth) and Envoy (ext_authz). It has no code of its own. Its tests
// start authsvc, a small upstream application and the real nginx and Caddy
// binaries with these files, act as a browser against them, and check the
// Traefik and Envoy files statically.
package deploy
