# Multi-stage: build the static binary with the project's own build command (make build), then
# ship it alone on an empty base, as a non-root user, with the default config baked in.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN make build && mkdir -p /out/tmp && chmod 1777 /out/tmp

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/tmp /tmp
COPY --from=build /src/bin/cobrowse-connector /usr/local/bin/cobrowse-connector
COPY configs/default.yaml /etc/cobrowse-connector/config.yaml
# nobody:nogroup as numbers: scratch has no /etc/passwd.
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/cobrowse-connector"]
CMD ["run", "--config", "/etc/cobrowse-connector/config.yaml"]
