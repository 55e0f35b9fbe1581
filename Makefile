.PHONY: run test ci build

run:
	go run ./cmd/authsvc

test:
	go test ./...

build:
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o authsvc ./cmd/authsvc

ci:
	bash .ci/run
