# Broken: one stage, so the compiler ships in the image and it runs as root.
FROM golang:1.26
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags="-s -w" -o /authsvc ./cmd/authsvc
ENV AUTHSVC_ADDR=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["/authsvc", "healthcheck"]
ENTRYPOINT ["/authsvc"]
CMD ["serve"]
