# Broken: the working directory belongs to root.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags="-s -w" -o /out/authsvc ./cmd/authsvc && mkdir -p /out/state/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/authsvc /authsvc
COPY --from=build /out/state /var/lib/authsvc
WORKDIR /var/lib/authsvc
USER 65532:65532
ENV AUTHSVC_ADDR=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["/authsvc", "healthcheck"]
ENTRYPOINT ["/authsvc"]
CMD ["serve"]
