# pcwatch: the watcher and the notifier, static, on nothing.
#
#   docker build -t pcwatch:dev .
#   docker run --rm pcwatch:dev --help
#   docker run --rm --read-only --tmpfs /tmp pcwatch:dev demo
#
# The same image without Docker: go run ./cmd/pcwatch-image -o pcwatch.oci.tar
# (package internal/image; its tests unpack that image and run it, and check
# that this file builds the same filesystem and configuration).
#
# Entrypoint: the watcher (`run` by default). The notifier is in the same
# image: --entrypoint /usr/local/bin/notifier (compose: entrypoint:,
# Kubernetes: command:). It runs as 65532:65532 and writes only to the /data
# volume, so a read-only root filesystem works.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=linux GOARCH=${TARGETARCH} go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/notifier ./cmd/watcher
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/usr/local/bin /rootfs/data /rootfs/tmp \
 && cp /out/notifier /out/watcher /rootfs/usr/local/bin/ \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\npcwatch:x:65532:65532:pcwatch:/data:/sbin/nologin\n' > /rootfs/etc/passwd \
 && printf 'root:x:0:\npcwatch:x:65532:\n' > /rootfs/etc/group \
 && chown 65532:65532 /rootfs/data && chmod 0700 /rootfs/data && chmod 1777 /rootfs/tmp

FROM scratch
COPY --from=build /rootfs/ /
USER 65532:65532
ENV PATH=/usr/local/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PCWATCH_DATA_DIR=/data
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9464/tcp 4222/tcp 9465/tcp
ENTRYPOINT ["/usr/local/bin/watcher"]
CMD ["run"]
