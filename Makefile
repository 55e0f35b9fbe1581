.PHONY: run test ci build

run:
	go run ./cmd/authsvc

test:
	go test ./...

build:
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o authsvc ./cmd/authsvc

ci:
	bash .ci/run

.PHONY: bench

# DURATION is the measured time of each case; a full run takes about
# 16 times as long, plus seeding. See docs/performance.md.
DURATION ?= 10s

bench:
	mkdir -p bench/bin
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o bench/bin/authsvc ./cmd/authsvc
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o bench/bin/floor ./bench/floor
	go run ./bench/run -duration $(DURATION) -authsvc bench/bin/authsvc -floor bench/bin/floor

# soak runs three replicas on a private PostgreSQL cluster under a mixed
# load for DURATION (60s unless DURATION is set on the command line or in
# the environment), with a database restart halfway; see
# docs/reliability.md.
SOAK_TIMEOUT ?= 3h
soak_duration = $(if $(filter command% environment%,$(origin DURATION)),$(DURATION),60s)
.PHONY: soak
soak:
	AUTHSVC_SOAK=$(soak_duration) AUTHSVC_TEST_REQUIRE_POSTGRES=1 \
		go test -run '^TestSoak$$' -count=1 -v -timeout $(SOAK_TIMEOUT) ./internal/reliability/
