// Command image builds gatehouse's container image as an OCI archive,
// without a container daemon and without pulling a base image (as ko does,
// with go-containerregistry): the static binary on an empty base, plus the
// few files a static Go server reads. `make image` runs it.
//
//	go run ./deploy/image -version V -out dist/gatehouse-V-oci.tar \
//	    -binary linux/amd64=PATH -binary linux/arm64=PATH
//
// The archive is an OCI image layout in a tar file whose index.json names
// one multi-platform image index, with the annotation
// org.opencontainers.image.ref.name=gatehouse:V (podman load names the
// image after it); `skopeo copy`, `podman load` and
// `docker load` choose the platform of the host from it.
//
// The layout is the Dockerfile's (deploy/image_test.go compares them): the
// user 65532 (nonroot, as in distroless), the binary at
// /usr/local/bin/gatehouse with the file capability cap_net_bind_service,
// /var/lib/gatehouse owned by the user, the same volumes, ports,
// entrypoint, stop signal and health check.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
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

// The image's layout: deploy/image_test.go checks the Dockerfile against
// these, and the built archive against both.
const (
	binPath   = "/usr/local/bin/gatehouse"
	confPath  = "/etc/gatehouse/gatehouse.yaml"
	stateDir  = "/var/lib/gatehouse"
	uid       = 65532 // distroless's nonroot: the Dockerfile's USER
	userName  = "nonroot"
	homeDir   = "/home/nonroot"
	caFile    = "/etc/ssl/certs/ca-certificates.crt"
	sourceURL = "https://github.com/gatehouse-pbx/gatehouse"
)

// ports are the contract's listen ports, TURN and the admin UI, as the
// Dockerfile EXPOSEs them. The TURN relay range is left out on purpose
// (docs/deploy.md): publish the configured range explicitly.
var ports = []string{"80/tcp", "443/tcp", "5060/tcp", "5061/tcp", "389/tcp", "636/tcp", "1720/tcp", "1300/tcp",
	"3478/udp", "3478/tcp", "5349/tcp", "8443/tcp"}

// capNetBindService is the security.capability extended attribute that
// `setcap cap_net_bind_service=+ep` writes: struct vfs_cap_data, revision 2,
// effective, CAP_NET_BIND_SERVICE (10) permitted, nothing inheritable.
var capNetBindService = func() []byte {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|0x1) // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
	binary.LittleEndian.PutUint32(b[4:], 1<<10)          // permitted, capabilities 0-31
	return b
}()

type platforms []string

func (p *platforms) String() string     { return strings.Join(*p, ",") }
func (p *platforms) Set(s string) error { *p = append(*p, s); return nil }

func main() {
	var bins platforms
	version := flag.String("version", "dev", "version: the image's version label and reference name")
	revision := flag.String("revision", "", "source revision (git commit) for the revision label")
	out := flag.String("out", "", "the OCI archive to write (a tar of an OCI image layout)")
	epoch := flag.Int64("epoch", 0, "timestamp of every file and of the image, in seconds (SOURCE_DATE_EPOCH)")
	ca := flag.String("ca-certificates", caFile, "CA bundle copied to "+caFile+" (Debian package ca-certificates)")
	flag.Var(&bins, "binary", "OS/ARCH=PATH of a static gatehouse binary; once per platform")
	flag.Parse()
	if *out == "" || len(bins) == 0 {
		fmt.Fprintln(os.Stderr, "image: -out and at least one -binary are required")
		flag.Usage()
		os.Exit(2)
	}
	if err := build(*out, *version, *revision, time.Unix(*epoch, 0).UTC(), *ca, bins); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func build(out, version, revision string, created time.Time, caPath string, bins []string) error {
	caData, err := os.ReadFile(caPath)
	if err != nil {
		return fmt.Errorf("CA certificates (tls.target_cas empty means the system roots): %w", err)
	}
	base, err := layer(created, baseFiles(caData))
	if err != nil {
		return err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, b := range bins {
		platform, path, ok := strings.Cut(b, "=")
		osName, arch, ok2 := strings.Cut(platform, "/")
		if !ok || !ok2 {
			return fmt.Errorf("-binary %q: want OS/ARCH=PATH", b)
		}
		img, err := image(created, version, revision, osName, arch, path, base)
		if err != nil {
			return fmt.Errorf("%s: %w", platform, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: osName, Architecture: arch}},
		})
	}

	dir, err := os.MkdirTemp(filepath.Dir(out), ".oci-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": "gatehouse:" + version,
	})); err != nil {
		return err
	}
	return tarDir(dir, out, created)
}

// entry is one file or directory of a layer.
type entry struct {
	name     string
	mode     int64 // permission bits; directories get TypeDir
	dir      bool
	owner    int
	data     []byte
	xattrSec []byte // security.capability, if any
}

func baseFiles(caData []byte) []entry {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n"+
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"+
		"%s:x:%d:%d:%s:%s:/sbin/nologin\n", userName, uid, uid, userName, homeDir)
	group := fmt.Sprintf("root:x:0:\nnobody:x:65534:\n%s:x:%d:\n", userName, uid)
	return []entry{
		{name: "etc", mode: 0o755, dir: true},
		{name: "etc/gatehouse", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		// Go's resolver reads it: files before DNS, as glibc's default.
		{name: "etc/nsswitch.conf", mode: 0o644, data: []byte("hosts: files dns\n")},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/ssl", mode: 0o755, dir: true},
		{name: "etc/ssl/certs", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(caFile, "/"), mode: 0o644, data: caData},
		{name: "home", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(homeDir, "/"), mode: 0o700, dir: true, owner: uid},
		{name: "tmp", mode: 0o1777, dir: true},
		{name: "usr", mode: 0o755, dir: true},
		{name: "usr/local", mode: 0o755, dir: true},
		{name: "usr/local/bin", mode: 0o755, dir: true},
		{name: "var", mode: 0o755, dir: true},
		{name: "var/lib", mode: 0o755, dir: true},
		// Owned by the user, so that a new named volume starts out writable for it.
		{name: strings.TrimPrefix(stateDir, "/"), mode: 0o750, dir: true, owner: uid},
	}
}

func image(created time.Time, version, revision, osName, arch, binPathOnHost string, base v1.Layer) (v1.Image, error) {
	bin, err := os.ReadFile(binPathOnHost)
	if err != nil {
		return nil, err
	}
	// Ports below 1024 as non-root where the runtime does not already allow
	// them (net.ipv4.ip_unprivileged_port_start), as the Dockerfile's setcap.
	binLayer, err := layer(created, []entry{{name: strings.TrimPrefix(binPath, "/"), mode: 0o755, data: bin, xattrSec: capNetBindService}})
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{
			Created: v1.Time{Time: created}, CreatedBy: "deploy/image: /etc/passwd, /etc/group (nonroot 65532), CA certificates, directories",
		}},
		mutate.Addendum{Layer: binLayer, MediaType: types.OCILayer, History: v1.History{
			Created: v1.Time{Time: created}, CreatedBy: "deploy/image: " + binPath + " (static, cap_net_bind_service)",
		}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = osName, arch
	cf.Created = v1.Time{Time: created}
	exposed := map[string]struct{}{}
	for _, p := range ports {
		exposed[p] = struct{}{}
	}
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", uid, uid),
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=" + caFile},
		Entrypoint: []string{binPath},
		Cmd:        []string{"run", "-config", confPath},
		WorkingDir: homeDir,
		Volumes:    map[string]struct{}{"/etc/gatehouse": {}, stateDir: {}},
		// SIGTERM drains for limits.shutdown_timeout (30 s by default):
		// stop with a grace period of 45 s.
		StopSignal:   "SIGTERM",
		ExposedPorts: exposed,
		// The OCI image format has no health check; Docker reads this key
		// of its own from the configuration, podman only from Docker-format
		// images (it says so): give it --health-cmd with the label's command.
		Healthcheck: &v1.HealthConfig{
			Test:        []string{"CMD", binPath, "health", "-config", confPath},
			Interval:    30 * time.Second,
			Timeout:     10 * time.Second,
			StartPeriod: 15 * time.Second,
			Retries:     3,
		},
		Labels: map[string]string{
			"org.opencontainers.image.title":         "gatehouse",
			"org.opencontainers.image.description":   "Multi-protocol reverse proxy for a DMZ in front of a PBX (HTTP, SIP, LDAP, H.323, STUN/TURN)",
			"org.opencontainers.image.version":       version,
			"org.opencontainers.image.revision":      revision,
			"org.opencontainers.image.created":       created.Format(time.RFC3339),
			"org.opencontainers.image.source":        sourceURL,
			"org.opencontainers.image.url":           sourceURL,
			"org.opencontainers.image.documentation": sourceURL + "/blob/main/docs/deploy.md",
			// What the Healthcheck above runs, for runtimes that ignore it.
			"io.github.gatehouse-pbx.healthcheck": binPath + " health -config " + confPath,
			// The TURN relay range is configuration (turn.relay_ports), not in ExposedPorts.
			"io.github.gatehouse-pbx.ports": "ExposedPorts are the default listen ports; publish turn.relay_ports (UDP) too, or use host networking",
		},
	}
	if revision == "" {
		delete(cf.Config.Labels, "org.opencontainers.image.revision")
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	return img, nil
}

// layer makes a gzipped OCI layer of the entries, in name order, owned by
// root unless said otherwise, every timestamp at created: the same inputs
// give the same digest.
func layer(created time.Time, entries []entry) (v1.Layer, error) {
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			Uid:     e.owner,
			Gid:     e.owner,
			ModTime: created,
			Format:  tar.FormatPAX,
		}
		if e.dir {
			h.Typeflag, h.Name = tar.TypeDir, e.name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if e.xattrSec != nil {
			// GNU tar's and containers' spelling of an extended attribute.
			h.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": string(e.xattrSec)}
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// tarDir writes the OCI layout at dir as the tar file out (an "OCI
// archive"), in name order with fixed times and owners.
func tarDir(dir, out string, created time.Time) error {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	tw := tar.NewWriter(f)
	for _, p := range names {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: created, Mode: 0o644, Format: tar.FormatPAX}
		switch {
		case fi.IsDir():
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
		case fi.Mode().IsRegular():
			h.Typeflag, h.Size = tar.TypeReg, fi.Size()
		default:
			return fmt.Errorf("%s: not a file or directory", p)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			if err := copyFile(tw, p); err != nil {
				return err
			}
		}
	}
	if err := errors.Join(tw.Close(), f.Close()); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

func copyFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}
