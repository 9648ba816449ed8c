# Multi-stage: build the static binary with the project's own build command (make build), then
# ship it alone on an empty base, as a non-root user, with the default config baked in.
#
#   docker build --build-arg VERSION=v1.2.3 --build-arg REVISION=$(git rev-parse HEAD) -t cobrowse-connector .
#
# Pinning the base images: a tag moves, a digest does not. For a reproducible, reviewable build
# write the builder's digest beside its tag, e.g.
#   FROM golang:1.26-bookworm@sha256:<digest> AS build
# where <digest> is what `docker buildx imagetools inspect golang:1.26-bookworm` prints as the
# index's Digest (renew it with each Go patch release, on purpose, in a commit of its own).
# `scratch` is not an image that is pulled: it is the empty base, has no digest and needs no pin;
# everything in the final image comes from the pinned builder and this repository.
FROM golang:1.26-bookworm AS build
# The release's version, as the binary reports it (`cobrowse-connector version`, the startup log,
# cobrowse_build_info); the build context has no .git (.dockerignore), so it is passed in.
ARG VERSION=""
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN make build VERSION="${VERSION}" && mkdir -p /out/tmp && chmod 1777 /out/tmp

FROM scratch
ARG VERSION=""
ARG REVISION=""
ARG SOURCE="https://github.com/cobrowse-connector/cobrowse-connector"
# OCI annotations. The repository has no license file yet: add org.opencontainers.image.licenses
# (an SPDX expression) once it has one.
LABEL org.opencontainers.image.title="cobrowse-connector" \
      org.opencontainers.image.description="Sidecar daemon that ties co-browse sessions (Genesys Co-browse, Zoom Cobrowse, Huawei CEC) to contact-center chat and voice interactions over NATS JetStream" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/tmp /tmp
COPY --from=build /src/bin/cobrowse-connector /usr/local/bin/cobrowse-connector
COPY configs/default.yaml /etc/cobrowse-connector/config.yaml
# nobody:nogroup as numbers: scratch has no /etc/passwd.
USER 65534:65534
# The internal listener (http.listen): /metrics, /healthz, /readyz, and /debug/pprof when
# http.pprof is set. For the probes and the metrics scraper only, never for the internet. The
# public listener of the vendor endpoints (http.public_listen) has no default port: expose the one
# you configure.
EXPOSE 9180
# Ready = NATS connected and the inbound consumer pulling (vendors never count, see
# docs/observability.md); scratch has no shell, so the binary asks its own /readyz. A container run
# with another config (another --config, or http.listen changed) needs the same here. Kubernetes
# ignores HEALTHCHECK: give the pod httpGet probes on /healthz and /readyz instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/usr/local/bin/cobrowse-connector", "health", "--config", "/etc/cobrowse-connector/config.yaml"]
ENTRYPOINT ["/usr/local/bin/cobrowse-connector"]
CMD ["run", "--config", "/etc/cobrowse-connector/config.yaml"]
