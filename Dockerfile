# The authsvc image: a static Go binary on a distroless base, run as a non-root user.
#
#   docker build -t authsvc .
#
# Base images are pinned by tag. Where a registry is reachable, pin them by digest too
# (FROM image:tag@sha256:...) so that a rebuild cannot silently change them.

FROM golang:1.26 AS build
WORKDIR /src

# Modules are downloaded in their own layer, so that only a change to go.mod or go.sum
# downloads them again.
COPY go.mod go.sum ./
RUN go mod download

# A pure Go build: no C toolchain or libc is needed at run time.
COPY . .
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags="-s -w" -o /out/authsvc ./cmd/authsvc \
	&& mkdir -p /out/state/data

# distroless/static rather than scratch: it has no shell or package manager either, but
# it already carries CA certificates, time zone data and a passwd entry for uid 65532,
# which scratch would need copied in by hand.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/authsvc /authsvc

# The working directory holds the embedded SQLite store (./data) when no PostgreSQL URL
# is given. It belongs to the runtime user, so a named volume mounted on
# /var/lib/authsvc/data starts with that owner too. With PostgreSQL nothing is written.
COPY --from=build --chown=65532:65532 /out/state /var/lib/authsvc
WORKDIR /var/lib/authsvc
USER 65532:65532

# The service listens on loopback by default; in a container it must listen on all
# interfaces to be reachable through a published port.
ENV AUTHSVC_ADDR=0.0.0.0:8080
EXPOSE 8080

# Exec form: the image has no shell. The subcommand asks GET /healthz on AUTHSVC_ADDR.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
	CMD ["/authsvc", "healthcheck"]

ENTRYPOINT ["/authsvc"]
CMD ["serve"]
