package deploy

import (
	binenc "encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
)

// imageConfig is the part of an OCI image configuration the checks read,
// with Docker's Healthcheck key, which the OCI format lacks.
type imageConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Created      string `json:"created"`
	Config       struct {
		User         string              `json:"User"`
		Entrypoint   []string            `json:"Entrypoint"`
		Cmd          []string            `json:"Cmd"`
		WorkingDir   string              `json:"WorkingDir"`
		Volumes      map[string]struct{} `json:"Volumes"`
		ExposedPorts map[string]struct{} `json:"ExposedPorts"`
		Labels       map[string]string   `json:"Labels"`
		StopSignal   string              `json:"StopSignal"`
		Healthcheck  *struct {
			Test        []string      `json:"Test"`
			Interval    time.Duration `json:"Interval"`
			Timeout     time.Duration `json:"Timeout"`
			StartPeriod time.Duration `json:"StartPeriod"`
			Retries     int           `json:"Retries"`
		} `json:"Healthcheck"`
	} `json:"config"`
	RootFS struct {
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

func skopeoJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out, err := exec.Command("skopeo", args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestImage builds the container image with `make image` and reads it back
// with skopeo and umoci, the way a registry or runtime would: one index for
// linux/amd64 and linux/arm64, each image with the user, entrypoint,
// volumes, ports, health check, labels and two layers; unpacked by umoci,
// the files have the owners, modes and capability the Dockerfile gives
// them. Then the Dockerfile's instructions are compared with the image.
func TestImage(t *testing.T) {
	testpeer.Program(t, "skopeo", "skopeo")
	testpeer.Program(t, "umoci", "umoci")
	dist := t.TempDir()
	const version = "v9.8.7"
	makeTarget(t, "image", "VERSION="+version, "DIST="+dist)
	archive := "oci-archive:" + filepath.Join(dist, "gatehouse-"+version+"-oci.tar")

	var index struct {
		MediaType string `json:"mediaType"`
		Manifests []struct {
			Platform struct {
				OS           string `json:"os"`
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	skopeoJSON(t, &index, "inspect", "--raw", archive)
	var plats []string
	for _, m := range index.Manifests {
		plats = append(plats, m.Platform.OS+"/"+m.Platform.Architecture)
	}
	if index.MediaType != "application/vnd.oci.image.index.v1+json" || !slices.Equal(plats, []string{"linux/amd64", "linux/arm64"}) {
		t.Fatalf("image index: %s with %q, want an OCI index of linux/amd64 and linux/arm64", index.MediaType, plats)
	}

	configs := map[string]*imageConfig{}
	for _, arch := range []string{"amd64", "arm64"} {
		var info struct {
			Architecture string
			Os           string
			Layers       []string
			Labels       map[string]string
		}
		skopeoJSON(t, &info, "inspect", "--override-os", "linux", "--override-arch", arch, archive)
		if info.Architecture != arch || info.Os != "linux" || len(info.Layers) != 2 {
			t.Errorf("%s: skopeo inspect: %s/%s with %d layers, want linux/%s with 2 (base files, binary)",
				arch, info.Os, info.Architecture, len(info.Layers), arch)
		}
		var cfg imageConfig
		// --raw: the configuration as stored, Docker's Healthcheck included.
		skopeoJSON(t, &cfg, "inspect", "--override-os", "linux", "--override-arch", arch, "--config", "--raw", archive)
		configs[arch] = &cfg
		c := cfg.Config
		if c.User != "65532:65532" {
			t.Errorf("%s: User %q, want 65532:65532 (non-root)", arch, c.User)
		}
		if run := append(slices.Clone(c.Entrypoint), c.Cmd...); !slices.Equal(run, []string{installedBin, "run", "-config", installedConf}) {
			t.Errorf("%s: Entrypoint+Cmd = %q", arch, run)
		}
		if !slices.Equal(sortedKeys(c.Volumes), []string{"/etc/gatehouse", "/var/lib/gatehouse"}) {
			t.Errorf("%s: Volumes %q", arch, sortedKeys(c.Volumes))
		}
		if c.Healthcheck == nil || !slices.Equal(c.Healthcheck.Test, []string{"CMD", installedBin, "health", "-config", installedConf}) {
			t.Errorf("%s: Healthcheck %+v", arch, c.Healthcheck)
		}
		for key, want := range map[string]string{
			"org.opencontainers.image.title":      "gatehouse",
			"org.opencontainers.image.version":    version,
			"org.opencontainers.image.source":     "https://github.com/gatehouse-pbx/gatehouse",
			"io.github.gatehouse-pbx.healthcheck": installedBin + " health -config " + installedConf,
		} {
			if c.Labels[key] != want {
				t.Errorf("%s: label %s = %q, want %q", arch, key, c.Labels[key], want)
			}
		}
		for _, key := range []string{"org.opencontainers.image.created", "org.opencontainers.image.revision",
			"org.opencontainers.image.description", "org.opencontainers.image.documentation"} {
			if c.Labels[key] == "" {
				t.Errorf("%s: no label %s", arch, key)
			}
		}
		if _, err := time.Parse(time.RFC3339, c.Labels["org.opencontainers.image.created"]); err != nil || c.Labels["org.opencontainers.image.created"] != cfg.Created {
			t.Errorf("%s: created label %q, config created %q (%v)", arch, c.Labels["org.opencontainers.image.created"], cfg.Created, err)
		}
	}
	if a, b := configs["amd64"].RootFS.DiffIDs, configs["arm64"].RootFS.DiffIDs; len(a) != 2 || len(b) != 2 || a[0] != b[0] || a[1] == b[1] {
		t.Errorf("layers: amd64 %q, arm64 %q; want the same base layer and a binary layer each", a, b)
	}

	t.Run("unpacked", func(t *testing.T) { imageUnpacked(t, archive, version) })
	t.Run("podman load", func(t *testing.T) { imagePodmanLoad(t, filepath.Join(dist, "gatehouse-"+version+"-oci.tar"), version) })
	t.Run("Dockerfile agrees", func(t *testing.T) { imageMatchesDockerfile(t, configs["amd64"]) })
}

func sortedKeys(m map[string]struct{}) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	slices.Sort(k)
	return k
}

// imageUnpacked copies this machine's platform out of the archive with
// skopeo (the platform choice podman makes too) and unpacks it with umoci
// into a runtime bundle.
func imageUnpacked(t *testing.T, archive, version string) {
	dir := t.TempDir()
	layout := filepath.Join(dir, "layout")
	must(t, "skopeo", "copy", "--quiet", "--override-os", "linux", "--override-arch", runtime.GOARCH, archive, "oci:"+layout+":gatehouse")
	bundle := filepath.Join(dir, "bundle")
	args := []string{"unpack", "--image", layout + ":gatehouse", bundle}
	if os.Geteuid() != 0 {
		args = []string{"unpack", "--rootless", "--image", layout + ":gatehouse", bundle}
	}
	must(t, "umoci", args...)

	var spec struct {
		Process struct {
			User struct {
				UID int `json:"uid"`
				GID int `json:"gid"`
			} `json:"user"`
			Args []string `json:"args"`
			Cwd  string   `json:"cwd"`
		} `json:"process"`
	}
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	p := spec.Process
	if p.User.UID != 65532 || p.User.GID != 65532 || !slices.Equal(p.Args, []string{installedBin, "run", "-config", installedConf}) || p.Cwd != "/home/nonroot" {
		t.Errorf("runtime bundle process: %+v", p)
	}

	rootfs := filepath.Join(bundle, "rootfs")
	bin := filepath.Join(rootfs, installedBin)
	if why, err := dynamicDeps(bin); err != nil || len(why) > 0 {
		t.Errorf("image's binary not static: %v %v", why, err)
	}
	if out := must(t, bin, "version"); out != "gatehouse "+version+"\n" {
		t.Errorf("image's gatehouse version = %q", out)
	}
	passwd, _ := os.ReadFile(filepath.Join(rootfs, "etc/passwd"))
	group, _ := os.ReadFile(filepath.Join(rootfs, "etc/group"))
	if !regexp.MustCompile(`(?m)^nonroot:x:65532:65532:[^:]*:/home/nonroot:`).Match(passwd) ||
		!regexp.MustCompile(`(?m)^nonroot:x:65532:`).Match(group) {
		t.Errorf("/etc/passwd, /etc/group lack nonroot 65532:\n%s\n%s", passwd, group)
	}
	if fi, err := os.Stat(filepath.Join(rootfs, "etc/ssl/certs/ca-certificates.crt")); err != nil || fi.Size() < 1000 {
		t.Errorf("CA certificates: %v", err)
	}
	if os.Geteuid() != 0 {
		return // rootless umoci keeps neither owners nor security.* attributes
	}
	for path, want := range map[string][3]int{
		"var/lib/gatehouse": {65532, 65532, 0o750},
		"home/nonroot":      {65532, 65532, 0o700},
		"etc/gatehouse":     {0, 0, 0o755},
		"usr/local/bin":     {0, 0, 0o755},
	} {
		fi, err := os.Stat(filepath.Join(rootfs, path))
		if err != nil {
			t.Error(err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if got := [3]int{int(st.Uid), int(st.Gid), int(fi.Mode().Perm())}; got != want {
			t.Errorf("/%s: %d:%d %o, want %d:%d %o", path, got[0], got[1], got[2], want[0], want[1], want[2])
		}
	}
	// cap_net_bind_service=ep, as the kernel reads it (struct vfs_cap_data).
	capData := make([]byte, 64)
	n, err := syscall.Getxattr(bin, "security.capability", capData)
	if err != nil || n < 8 {
		t.Fatalf("image's binary has no file capability (security.capability): %v", err)
	}
	magic, permitted := binenc.LittleEndian.Uint32(capData), binenc.LittleEndian.Uint32(capData[4:])
	if magic&0xff000000 != 0x02000000 || magic&1 != 1 || permitted != 1<<10 {
		t.Errorf("security.capability = %x, want revision 2, effective, CAP_NET_BIND_SERVICE only", capData[:n])
	}
}

// imageMatchesDockerfile: who builds with Docker gets the same layout.
func imageMatchesDockerfile(t *testing.T, cfg *imageConfig) {
	data, err := os.ReadFile(root + "/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	one := func(kind string) string {
		v := dockerInstructions(t, data, kind)
		if len(v) != 1 {
			t.Fatalf("Dockerfile: want one %s, have %q", kind, v)
		}
		return v[0]
	}
	array := func(s string) []string {
		var a []string
		if err := json.Unmarshal([]byte(s), &a); err != nil {
			t.Fatalf("%q is not a JSON array: %v", s, err)
		}
		return a
	}
	c := cfg.Config
	if u := one("USER"); u != c.User {
		t.Errorf("Dockerfile USER %s, image %s", u, c.User)
	}
	if v := array(one("VOLUME")); !slices.Equal(v, sortedKeys(c.Volumes)) {
		t.Errorf("Dockerfile VOLUME %q, image %q", v, sortedKeys(c.Volumes))
	}
	if e, cmd := array(one("ENTRYPOINT")), array(one("CMD")); !slices.Equal(e, c.Entrypoint) || !slices.Equal(cmd, c.Cmd) {
		t.Errorf("Dockerfile ENTRYPOINT %q CMD %q, image %q %q", e, cmd, c.Entrypoint, c.Cmd)
	}
	if s := one("STOPSIGNAL"); s != c.StopSignal {
		t.Errorf("Dockerfile STOPSIGNAL %s, image %s", s, c.StopSignal)
	}
	var exposed []string
	for _, e := range dockerInstructions(t, data, "EXPOSE") {
		exposed = append(exposed, strings.Fields(e)...)
	}
	slices.Sort(exposed)
	if !slices.Equal(exposed, sortedKeys(c.ExposedPorts)) {
		t.Errorf("Dockerfile EXPOSE %q, image ExposedPorts %q", exposed, sortedKeys(c.ExposedPorts))
	}
	opts, cmd, _ := strings.Cut(one("HEALTHCHECK"), "CMD ")
	if h := c.Healthcheck; h == nil || !slices.Equal(append([]string{"CMD"}, array(cmd)...), h.Test) {
		t.Errorf("Dockerfile HEALTHCHECK CMD %s, image %+v", cmd, h)
	} else {
		for _, o := range strings.Fields(opts) {
			k, v, _ := strings.Cut(strings.TrimPrefix(o, "--"), "=")
			var got, want string
			switch k {
			case "retries":
				got, want = strconv.Itoa(h.Retries), v
			case "interval", "timeout", "start-period":
				d, err := time.ParseDuration(v)
				if err != nil {
					t.Fatal(err)
				}
				want = d.String()
				got = map[string]time.Duration{"interval": h.Interval, "timeout": h.Timeout, "start-period": h.StartPeriod}[k].String()
			default:
				t.Errorf("HEALTHCHECK option %s unknown to this test", o)
			}
			if got != want {
				t.Errorf("HEALTHCHECK --%s: Dockerfile %s, image %s", k, want, got)
			}
		}
	}
	// The base and the files the image assembles itself.
	if from := dockerInstructions(t, data, "FROM"); len(from) != 2 || from[1] != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("Dockerfile runtime base %q: the image's passwd (nonroot 65532, /home/nonroot) and CA bundle copy distroless static:nonroot", from)
	}
	if c.WorkingDir != "/home/nonroot" {
		t.Errorf("image WorkingDir %q, distroless nonroot's is /home/nonroot", c.WorkingDir)
	}
	for _, want := range []string{
		"setcap cap_net_bind_service=+ep /out/gatehouse",
		"chown 65532:65532 /out/state && chmod 0750 /out/state",
		"COPY --from=build --chown=65532:65532 /out/state /var/lib/gatehouse",
		"COPY --from=build /out/gatehouse " + installedBin,
	} {
		if !strings.Contains(string(data), want) {
			t.Errorf("Dockerfile lacks %q, which the image has", want)
		}
	}
}

// imagePodmanLoad loads the archive as docs/deploy.md says, into a podman
// storage of the test's own (nothing on the machine is touched): the image
// is named after the archive's reference, for this machine's platform.
// (Running it needs more than CI's sandbox allows: crun may not set rlimits.)
func imagePodmanLoad(t *testing.T, archive, version string) {
	needRootCI(t)
	testpeer.Program(t, "podman", "podman")
	dir := t.TempDir()
	podman := func(args ...string) string {
		return must(t, "podman", append([]string{"--root", filepath.Join(dir, "storage"), "--runroot", filepath.Join(dir, "run"),
			"--storage-driver", "vfs", "--events-backend", "none", "--cgroup-manager", "cgroupfs"}, args...)...)
	}
	if out := podman("load", "-i", archive); !strings.Contains(out, "Loaded image: localhost/gatehouse:"+version) {
		t.Errorf("podman load: %s", out)
	}
	got := podman("image", "inspect", "--format", "{{.Os}}/{{.Architecture}} {{.User}} {{json .Config.Entrypoint}}", "gatehouse:"+version)
	if want := "linux/" + runtime.GOARCH + " 65532:65532 [\"" + installedBin + "\"]\n"; got != want {
		t.Errorf("podman image inspect: %q, want %q", got, want)
	}
}
