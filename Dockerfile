# kubelogd container image: a static binary on distroless, running as UID/GID 65532.
#   docker build -t kubelogd:latest .
# Tags are pinned; pin digests too (image@sha256:…) when your registry policy wants them.

FROM golang:1.26.8 AS build
WORKDIR /src
# The toolchain in the image builds; go.mod never makes it download another one.
ENV GOTOOLCHAIN=local CGO_ENABLED=0 GOOS=linux GOFLAGS=-mod=readonly
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
# CGO_ENABLED=0: a static binary that needs no libc in the runtime image.
# -trimpath: no build-machine paths in the binary.
# No -tags failpoint: that build is the tests'; without it the crash points are no-op stubs.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/kubelogd ./cmd/kubelogd
# The output directory, owned by the runtime user so that `docker run` (and a named volume,
# which starts as a copy of it) is writable. In Kubernetes the PVC and fsGroup take over.
RUN mkdir /out/logs

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/kubelogd /kubelogd
COPY --from=build --chown=65532:65532 /out/logs /var/log/kubelogd
# The same UID and GID as runAsUser/runAsGroup in deploy/base/deployment.yaml.
USER 65532:65532
# /metrics, /healthz and /readyz.
EXPOSE 8080
ENTRYPOINT ["/kubelogd"]
# The Deployment's args, so `docker run` behaves like the pod.
CMD ["--output-dir=/var/log/kubelogd", "--metrics-addr=:8080", "--log-format=json"]
