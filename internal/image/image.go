// Package image builds pcwatch's container image without a Docker daemon
// or a registry: the static binaries (CGO_ENABLED=0) in one layer on
// nothing (FROM scratch), with a non-root user, CA certificates and the
// one data volume, written as an OCI image layout in a tar file
// (cmd/pcwatch-image). The Dockerfile at the repository's root builds the
// same filesystem with docker build; TestDockerfileMatchesImage keeps the
// two in step.
//
// The image is made to run with a read-only root filesystem: the
// programs write only under DataDir (the volume) and, for `watcher demo`
// without --data-dir, TmpDir.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's layout (the Dockerfile's too).
const (
	BinDir  = "/usr/local/bin"
	DataDir = "/data"
	TmpDir  = "/tmp"
	CAFile  = "/etc/ssl/certs/ca-certificates.crt"
	// UID and GID of the user the programs run as (the distroless
	// "nonroot" id, so volume permissions carry over).
	UID      = 65532
	GID      = 65532
	UserName = "pcwatch"
)

// Programs are the binaries the image holds, by package.
var Programs = map[string]string{"watcher": "./cmd/watcher", "notifier": "./cmd/notifier"}

// Ports the image exposes: the watcher's operations server and its
// embedded NATS, the notifier's operations server.
var Ports = []string{"9464/tcp", "4222/tcp", "9465/tcp"}

// Passwd and Group are the image's /etc/passwd and /etc/group.
var (
	Passwd = fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:pcwatch:%s:/sbin/nologin\n", UserName, UID, GID, DataDir)
	Group  = fmt.Sprintf("root:x:0:\n%s:x:%d:\n", UserName, GID)
)

// BuildBinaries builds the programs static (CGO_ENABLED=0, -trimpath,
// stripped) for goarch ("" the host's) from the module at moduleDir into
// outDir, and returns their paths by name.
func BuildBinaries(ctx context.Context, moduleDir, outDir, goarch string) (map[string]string, error) {
	if goarch == "" {
		goarch = runtime.GOARCH
	}
	names := make([]string, 0, len(Programs))
	for n := range Programs {
		names = append(names, n)
	}
	sort.Strings(names)
	args := []string{"build", "-trimpath", "-ldflags=-s -w", "-o", outDir + string(os.PathSeparator)}
	for _, n := range names {
		args = append(args, Programs[n])
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %v\n%s", err, out)
	}
	bins := map[string]string{}
	for _, n := range names {
		bins[n] = filepath.Join(outDir, n)
	}
	return bins, nil
}

// Options configure Build.
type Options struct {
	// Binaries are the programs' paths by name (BuildBinaries).
	Binaries map[string]string
	// CAFile is the CA bundle copied in; default the host's
	// /etc/ssl/certs/ca-certificates.crt.
	CAFile string
	// Arch is the binaries' architecture; default the host's.
	Arch string
	// Version labels the image (org.opencontainers.image.version).
	Version string
	// Created is the image's creation time, and every file's; zero is
	// the Unix epoch, so the same inputs give the same image digest.
	Created time.Time
}

// Config returns the image's runtime configuration.
func Config(version string) v1.Config {
	ports := map[string]struct{}{}
	for _, p := range Ports {
		ports[p] = struct{}{}
	}
	return v1.Config{
		User:         fmt.Sprintf("%d:%d", UID, GID),
		Env:          []string{"PATH=" + BinDir, "SSL_CERT_FILE=" + CAFile, "PCWATCH_DATA_DIR=" + DataDir},
		Entrypoint:   []string{BinDir + "/watcher"},
		Cmd:          []string{"run"},
		WorkingDir:   DataDir,
		Volumes:      map[string]struct{}{DataDir: {}},
		ExposedPorts: ports,
		Labels: map[string]string{
			"org.opencontainers.image.title":   "pcwatch",
			"org.opencontainers.image.source":  "https://github.com/pcwatch/pcwatch",
			"org.opencontainers.image.version": version,
			"org.opencontainers.image.description": "pcwatch watcher and notifier (entrypoint watcher; " +
				"run the notifier with --entrypoint " + BinDir + "/notifier)",
		},
	}
}

// Build assembles the image: one OCI layer with the directories, the
// user, the CA bundle and the binaries, on an empty base.
func Build(o Options) (v1.Image, error) {
	if o.CAFile == "" {
		o.CAFile = CAFile
	}
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	if o.Created.IsZero() {
		o.Created = time.Unix(0, 0)
	}
	layerTar, err := rootfs(o)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: o.Created}, CreatedBy: "pcwatch-image: static binaries, user, CA certificates", Comment: "pcwatch"}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = o.Arch, "linux", v1.Time{Time: o.Created}
	cf.Config = Config(o.Version)
	return mutate.ConfigFile(img, cf)
}

// rootfs is the layer's tar.
func rootfs(o Options) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := o.Created.UTC()
	dir := func(name string, mode int64, uid, gid int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: gid, ModTime: mt, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, body []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: mt, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	ca, err := os.ReadFile(o.CAFile)
	if err != nil {
		return nil, fmt.Errorf("CA certificates: %w (install Debian's ca-certificates, or name a bundle)", err)
	}
	for _, d := range []string{"etc", "etc/ssl", "etc/ssl/certs", "usr", "usr/local", "usr/local/bin"} {
		if err := dir(d, 0o755, 0, 0); err != nil {
			return nil, err
		}
	}
	if err := dir(strings.TrimPrefix(DataDir, "/"), 0o700, UID, GID); err != nil {
		return nil, err
	}
	if err := dir(strings.TrimPrefix(TmpDir, "/"), 0o1777, 0, 0); err != nil {
		return nil, err
	}
	if err := file("etc/passwd", 0o644, []byte(Passwd)); err != nil {
		return nil, err
	}
	if err := file("etc/group", 0o644, []byte(Group)); err != nil {
		return nil, err
	}
	if err := file(strings.TrimPrefix(CAFile, "/"), 0o644, ca); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(o.Binaries))
	for n := range o.Binaries {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, errors.New("no binaries")
	}
	for _, n := range names {
		b, err := os.ReadFile(o.Binaries[n])
		if err != nil {
			return nil, err
		}
		if err := file(strings.TrimPrefix(BinDir, "/")+"/"+n, 0o755, b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteOCI writes img as an OCI image layout in a tar file at path
// (docker load, podman load, skopeo copy oci-archive:PATH ... read it),
// naming it ref (org.opencontainers.image.ref.name, e.g. pcwatch:dev).
func WriteOCI(path string, img v1.Image, ref string) error {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".oci-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref})); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".oci-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname = filepath.ToSlash(rel), time.Unix(0, 0), 0, 0, "", ""
		if fi.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(tw, src)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		f.Close()
		return err
	}
	return os.Rename(f.Name(), path)
}

// ReadOCI reads the image WriteOCI wrote (its first manifest), unpacking
// the layout into dir.
func ReadOCI(path, dir string) (v1.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := Untar(f, dir, false); err != nil {
		return nil, err
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) == 0 {
		return nil, errors.New("the layout holds no image")
	}
	return idx.Image(m.Manifests[0].Digest)
}

// Untar unpacks r into dir: regular files, directories and symbolic links
// with their modes (ownership is the caller's), refusing names that leave
// dir. withSpecial keeps the set-uid, set-gid and sticky bits.
func Untar(r io.Reader, dir string, withSpecial bool) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(filepath.FromSlash(h.Name))
		if name == "." {
			continue
		}
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, ".."+string(os.PathSeparator)) {
			return fmt.Errorf("tar entry %q leaves the directory", h.Name)
		}
		p := filepath.Join(dir, name)
		mode := os.FileMode(h.Mode).Perm()
		if withSpecial {
			if h.Mode&0o1000 != 0 {
				mode |= os.ModeSticky
			}
			if h.Mode&0o2000 != 0 {
				mode |= os.ModeSetgid
			}
			if h.Mode&0o4000 != 0 {
				mode |= os.ModeSetuid
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			if err := os.Chmod(p, mode); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			if err := os.Chmod(p, mode); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("tar entry %q: type %c not expected in pcwatch's image", h.Name, h.Typeflag)
		}
	}
}
