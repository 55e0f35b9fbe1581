// Package reliability holds tests that break authsvc's surroundings for
// real and check what the service does about it: a PostgreSQL server that
// stops or stops answering, a pool whose every connection is stuck behind
// a table lock, several replicas sharing one database, processes killed in
// the middle of a request, many writers on the embedded store, and a long
// mixed workload with a database restart in the middle.
//
// Every test starts the authsvc binary, built with CGO_ENABLED=0 as it
// ships, and talks to it over loopback. Tests that stop or lock PostgreSQL
// run a private cluster of their own on a free port, started from the
// server programs under /usr/lib/postgresql/*/bin; without them the tests
// skip, loudly, unless AUTHSVC_TEST_REQUIRE_POSTGRES=1 makes that a
// failure. The soak runs only when AUTHSVC_SOAK names its duration.
//
// docs/reliability.md lists each failure mode, what authsvc does about it
// and the test that shows it. The package has no code outside its tests.
package reliability
