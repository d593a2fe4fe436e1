// Command pcwatch-image builds pcwatch's container image with no Docker
// daemon and no registry: static binaries (CGO_ENABLED=0) of the watcher
// and the notifier on an empty base, as an OCI image layout in a tar file
// (package internal/image).
//
//	go run ./cmd/pcwatch-image -o pcwatch.oci.tar [-tag pcwatch:dev] [-arch amd64]
//
// Then: docker load -i pcwatch.oci.tar, podman load -i pcwatch.oci.tar, or
// skopeo copy oci-archive:pcwatch.oci.tar docker://registry.example.com/pcwatch:TAG.
// The same inputs give the same digest (every time stamp is the epoch).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/pcwatch/pcwatch/internal/image"
)

func main() {
	out := flag.String("o", "pcwatch.oci.tar", "output: an OCI image layout in a tar file")
	tag := flag.String("tag", "pcwatch:dev", "the image's reference name")
	arch := flag.String("arch", "", "GOARCH of the binaries (default the host's)")
	version := flag.String("version", "dev", "org.opencontainers.image.version label")
	ca := flag.String("ca", image.CAFile, "CA certificate bundle copied into the image")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := build(ctx, *out, *tag, *arch, *version, *ca); err != nil {
		fmt.Fprintln(os.Stderr, "pcwatch-image:", err)
		os.Exit(1)
	}
}

func build(ctx context.Context, out, tag, arch, version, ca string) error {
	bin, err := os.MkdirTemp("", "pcwatch-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	bins, err := image.BuildBinaries(ctx, ".", bin, arch)
	if err != nil {
		return err
	}
	img, err := image.Build(image.Options{Binaries: bins, CAFile: ca, Arch: arch, Version: version})
	if err != nil {
		return err
	}
	if err := image.WriteOCI(out, img, tag); err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s: %s %s\n", out, tag, d)
	return nil
}
