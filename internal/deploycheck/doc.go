// Package deploycheck checks the container files at the root of the repository
// (Dockerfile, .dockerignore and docker-compose.yml) without a container engine.
//
// The package has no code outside its tests. They load the compose file with
// compose-go, which applies the compose specification's schema, and parse and lint
// the Dockerfile with BuildKit's own front end, offline. On top of that they hold both
// files to the rules the deployment relies on: a non-root user, health checks, secrets
// passed as files, and a start order that waits for a healthy database. Every rule is
// also run against a deliberately broken file under testdata, which it must reject.
package deploycheck
