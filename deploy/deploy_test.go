package deploy

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// root is the repository root, seen from this package's directory.
const root = ".."

// testVersion is stamped into the test build, as `make build` stamps the
// git version, to prove -ldflags reaches main.version.
const testVersion = "deploy-test-1.2.3"

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// binary builds gatehouse once for all tests the way `make build` and the
// Dockerfile do: CGO_ENABLED=0, -trimpath, the version through -ldflags.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "gatehouse-deploy-"); buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "gatehouse")
		cmd := exec.Command("go", "build", "-trimpath",
			"-ldflags", "-s -w -X main.version="+testVersion,
			"-o", buildBin, "./cmd/gatehouse")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// dynamicDeps says why the ELF file at path would need a dynamic loader,
// or returns nil: no PT_INTERP program header (no loader named) and no
// DT_NEEDED entry (no shared library asked for).
func dynamicDeps(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var why []string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			why = append(why, "PT_INTERP program header (needs a dynamic loader)")
		}
	}
	libs, err := f.DynString(elf.DT_NEEDED)
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		// A file without a dynamic section has no DT_NEEDED: debug/elf
		// returns no error for that, so anything here is a broken file.
		return nil, fmt.Errorf("reading DT_NEEDED: %w", err)
	}
	for _, l := range libs {
		why = append(why, "DT_NEEDED "+l)
	}
	return why, nil
}

func TestStaticBinary(t *testing.T) {
	bin := binary(t)
	why, err := dynamicDeps(bin)
	if err != nil {
		t.Fatal(err)
	}
	if len(why) > 0 {
		t.Errorf("gatehouse built with CGO_ENABLED=0 is not static: %s", strings.Join(why, "; "))
	}

	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "gatehouse "+testVersion {
		t.Errorf("gatehouse version = %q (%v), want %q: -ldflags -X main.version did not take",
			out, err, "gatehouse "+testVersion)
	}
}

// TestDynamicDepsSeesDynamic keeps the static check honest: it must flag an
// ordinary dynamically linked program.
func TestDynamicDepsSeesDynamic(t *testing.T) {
	var dyn string
	for _, p := range []string{"/bin/sh", "/usr/bin/env", "/bin/ls"} {
		if why, err := dynamicDeps(p); err == nil && len(why) > 0 {
			dyn = p
			break
		}
	}
	if dyn == "" {
		t.Skip("no dynamically linked program found to test the check against")
	}
	why, _ := dynamicDeps(dyn)
	if !slices.ContainsFunc(why, func(s string) bool { return strings.HasPrefix(s, "PT_INTERP") }) ||
		!slices.ContainsFunc(why, func(s string) bool { return strings.HasPrefix(s, "DT_NEEDED ") }) {
		t.Errorf("dynamicDeps(%s) = %q, want PT_INTERP and DT_NEEDED entries", dyn, why)
	}
}

// The examples name their files where an installed appliance keeps them.
// The test moves those two trees into a temporary directory and creates
// every file an example names there:
//
//   - NAME.crt with a NAME.key next to it: a server certificate and its key
//     (issued by a throwaway CA for the example's service names);
//   - NAME.crt alone: a CA certificate (tls.client_cas, tls.target_cas);
//   - anything under /var/lib/gatehouse: left to gatehouse (the state file);
//   - /etc/gatehouse/gatehouse.yaml (in comments): the example itself.
//
// So an example passes only if it is valid apart from the files an
// administrator supplies, and keeps to that naming.
var installPaths = regexp.MustCompile(`/(?:etc/gatehouse|var/lib/gatehouse)/[^\s"',\]}]+`)

var wantExamples = []string{"master-slave.yaml", "mypbx-only.yaml", "single-pbx.yaml", "stun-turn-only.yaml"}

func examples(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "configs", "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	// The Debian package's conffile is an example too: it must pass once
	// its certificates exist.
	files = append(files, filepath.Join(root, "deploy", "debian", "gatehouse.yaml"))
	for _, w := range wantExamples {
		if !slices.Contains(names, w) {
			t.Errorf("configs/examples/%s is missing (docs/deploy.md refers to it)", w)
		}
	}
	return files
}

// installExample writes the example at path into a temporary root with
// every file it names, and returns the rewritten configuration's path.
func installExample(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	var files []string
	for _, p := range installPaths.FindAllString(string(data), -1) {
		if !slices.Contains(files, p) {
			files = append(files, p)
		}
	}
	// Service names for the server certificate: only to make it realistic;
	// `gatehouse check` does not compare them.
	names := []string{"gatehouse.example.com"}
	for _, m := range regexp.MustCompile(`(?m)^\s*- name:\s*([\w./-]+)`).FindAllStringSubmatch(string(data), -1) {
		if !strings.Contains(m[1], "/") {
			names = append(names, m[1])
		}
	}
	ca := testpki.NewCA(t, "example")
	for _, p := range files {
		dst := filepath.Join(tmp, p)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(p, "/var/lib/gatehouse/"), p == installedConf:
			// The state file is gatehouse's to make; the configuration is the example.
		case strings.HasSuffix(p, ".crt") && slices.Contains(files, strings.TrimSuffix(p, ".crt")+".key"):
			iss := ca.Server(names...)
			copyFile(t, iss.CertFile, dst)
			copyFile(t, iss.KeyFile, strings.TrimSuffix(dst, ".crt")+".key")
		case strings.HasSuffix(p, ".crt"):
			copyFile(t, testpki.NewCA(t, strings.TrimSuffix(filepath.Base(p), ".crt")).File, dst)
		case strings.HasSuffix(p, ".key"):
			if !slices.Contains(files, strings.TrimSuffix(p, ".key")+".crt") {
				t.Errorf("%s names %s without %s.crt next to it", path, p, strings.TrimSuffix(filepath.Base(p), ".key"))
			}
		default:
			t.Errorf("%s names %s: not a .crt, .key or state file the test knows how to make", path, p)
		}
	}
	rewritten := installPaths.ReplaceAllStringFunc(string(data), func(p string) string { return filepath.Join(tmp, p) })
	cfg := filepath.Join(tmp, "etc", "gatehouse", "gatehouse.yaml")
	if err := os.MkdirAll(filepath.Dir(cfg), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(rewritten), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestExamplesPassCheck(t *testing.T) {
	bin := binary(t)
	for _, path := range examples(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			cfg := installExample(t, path)
			out, err := exec.Command(bin, "check", "-config", cfg).CombinedOutput()
			if err != nil {
				t.Fatalf("gatehouse check %s: %v\n%s", filepath.Base(path), err, out)
			}
			if !strings.Contains(string(out), ": OK\n") {
				t.Fatalf("gatehouse check %s printed no OK:\n%s", filepath.Base(path), out)
			}
			// The appliance's layout: the blacklist keeps its state where the
			// unit's StateDirectory= and the image's volume put it.
			c, err := configs.Load(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(cfg))), "var/lib/gatehouse/state.json"); c.Blacklist.State != want {
				t.Errorf("blacklist.state = %q, want /var/lib/gatehouse/state.json", c.Blacklist.State)
			}
			if c.TURN.Listen != "" && (len(c.TURN.Accounts) > 0 || c.TURN.Secret != "") && c.TURN.RelayAddress == "" {
				// turn.New refuses this at start-up, after `check` said OK.
				t.Errorf("turn relays with turn.listen %q but no relay_address", c.TURN.Listen)
			}
			if c.Admin.Listen == "" {
				t.Errorf("no admin.listen: the container's HEALTHCHECK (gatehouse health) needs it")
			}
		})
	}
}

// unitPath is the unit as shipped; it names the binary where `make
// release` archives tell administrators to install it.
const (
	unitPath      = root + "/deploy/systemd/gatehouse.service"
	installedBin  = "/usr/local/bin/gatehouse"
	installedConf = "/etc/gatehouse/gatehouse.yaml"
)

// unitSettings parses a unit file into key → values, in order.
func unitSettings(t *testing.T, data []byte) map[string][]string {
	t.Helper()
	kv := map[string][]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("unit line %q is not KEY=VALUE", line)
		}
		kv[k] = append(kv[k], v)
	}
	return kv
}

func TestSystemdUnitSettings(t *testing.T) {
	data, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	kv := unitSettings(t, data)
	for key, want := range map[string]string{
		"AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"StateDirectory":          "gatehouse",
		"ConfigurationDirectory":  "gatehouse",
		"ExecStart":               installedBin + " run -config " + installedConf,
		"ExecStartPre":            installedBin + " check -config " + installedConf,
		"User":                    "gatehouse",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
	} {
		if got := kv[key]; !slices.Contains(got, want) {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	if r := kv["ExecReload"]; len(r) == 0 || !strings.Contains(r[len(r)-1], "-HUP $MAINPID") {
		t.Errorf("ExecReload = %q, want the last one to send SIGHUP to $MAINPID", r)
	}
	if n, err := strconv.Atoi(strings.Join(kv["LimitNOFILE"], "")); err != nil || n < 65536 {
		t.Errorf("LimitNOFILE = %q, want at least 65536 (tens of thousands of phones, two descriptors each)", kv["LimitNOFILE"])
	}
	// blacklist.state must be under StateDirectory=, the only writable place.
	sysusers, err := os.ReadFile(root + "/deploy/systemd/gatehouse.sysusers")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^u gatehouse `).Match(sysusers) {
		t.Errorf("gatehouse.sysusers does not create the user gatehouse the unit runs as")
	}
}

// TestSystemdVerify runs systemd-analyze verify on the unit. verify wants
// every Exec binary to exist, so it checks a copy whose binary paths point
// at the test build; everything else is the shipped file. verify exits 0
// on unknown keys and unparsable values (it only warns), so any line it
// prints about the unit fails the test too.
func TestSystemdVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze not found: CI must install the Debian package systemd")
		}
		t.Skip("systemd-analyze not found (Debian package systemd)")
	}
	bin := binary(t)
	data, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(installedBin+" ")) {
		t.Fatalf("%s does not run %s", unitPath, installedBin)
	}
	unit := filepath.Join(t.TempDir(), "gatehouse.service")
	if err := os.WriteFile(unit, bytes.ReplaceAll(data, []byte(installedBin+" "), []byte(bin+" ")), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", unit)
	// No pager, no colour; --man=no would need a newer systemd than Debian 12's.
	cmd.Env = append(os.Environ(), "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "gatehouse.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}

	// The sysusers file, by systemd-sysusers itself, against an empty root
	// so that nothing on this machine is read or written.
	sysusers, err := exec.LookPath("systemd-sysusers")
	if err != nil {
		t.Fatal("systemd-analyze without systemd-sysusers: both come with the package systemd")
	}
	abs, err := filepath.Abs(root + "/deploy/systemd/gatehouse.sysusers")
	if err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	if err := os.Mkdir(filepath.Join(empty, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(sysusers, "--dry-run", "--root="+empty, abs).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Creating user 'gatehouse'") {
		t.Errorf("systemd-sysusers --dry-run gatehouse.sysusers: %v\n%s", err, out)
	}
}

// dockerInstructions returns the Dockerfile's instructions of one kind
// with their (continuation-joined) arguments.
func dockerInstructions(t *testing.T, data []byte, kind string) []string {
	t.Helper()
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") && cur.Len() == 0 {
			continue
		}
		cont := strings.HasSuffix(trimmed, "\\")
		cur.WriteString(strings.TrimSuffix(trimmed, "\\"))
		cur.WriteString(" ")
		if cont {
			continue
		}
		instr := strings.TrimSpace(cur.String())
		cur.Reset()
		if k, rest, _ := strings.Cut(instr, " "); strings.EqualFold(k, kind) {
			out = append(out, strings.TrimSpace(rest))
		}
	}
	return out
}

// TestDockerfile checks the Dockerfile against the program, since no
// container engine is here to build it: the commands it runs exist with
// the flags it gives, and every port the examples listen on is exposed.
func TestDockerfile(t *testing.T) {
	bin := binary(t)
	data, err := os.ReadFile(root + "/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	execForm := func(s string) []string {
		var argv []string
		if err := json.Unmarshal([]byte(s), &argv); err != nil {
			t.Fatalf("%q is not an exec-form JSON array (the runtime image has no shell): %v", s, err)
		}
		return argv
	}
	entry := dockerInstructions(t, data, "ENTRYPOINT")
	cmd := dockerInstructions(t, data, "CMD")
	health := dockerInstructions(t, data, "HEALTHCHECK")
	if len(entry) != 1 || len(cmd) != 1 || len(health) != 1 {
		t.Fatalf("want one ENTRYPOINT, CMD and HEALTHCHECK; have %d, %d, %d", len(entry), len(cmd), len(health))
	}
	run := append(execForm(entry[0]), execForm(cmd[0])...)
	_, hc, ok := strings.Cut(health[0], "CMD ")
	if !ok {
		t.Fatalf("HEALTHCHECK %q has no CMD", health[0])
	}
	probe := execForm(hc)
	if want := []string{installedBin, "run", "-config", installedConf}; !slices.Equal(run, want) {
		t.Errorf("ENTRYPOINT + CMD = %q, want %q", run, want)
	}
	if want := []string{installedBin, "health", "-config", installedConf}; !slices.Equal(probe, want) {
		t.Errorf("HEALTHCHECK CMD = %q, want %q", probe, want)
	}
	if !regexp.MustCompile(`(?m)^COPY --from=build \S+ ` + regexp.QuoteMeta(installedBin) + `$`).Match(data) {
		t.Errorf("the binary is not copied to %s", installedBin)
	}
	// The subcommands and flags parse: a missing configuration is exit 1
	// with the loader's message, not exit 2 (usage) or "unknown command".
	for _, argv := range [][]string{run, probe} {
		args := slices.Clone(argv[1:])
		args[len(args)-1] = filepath.Join(t.TempDir(), "missing.yaml")
		c := exec.Command(bin, args...)
		if argv[1] == "run" {
			// check parses the same flags as run, without starting to serve.
			c = exec.Command(bin, append([]string{"check"}, args[1:]...)...)
		}
		out, err := c.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "missing.yaml") {
			t.Errorf("%q: %v, %q; want exit 1 naming the missing file", c.Args, err, out)
		}
	}

	exposed := map[string]bool{}
	for _, e := range dockerInstructions(t, data, "EXPOSE") {
		for _, p := range strings.Fields(e) {
			exposed[p] = true
		}
	}
	for _, path := range examples(t) {
		c, err := configs.Load(installExample(t, path))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{}
		for typ, addr := range c.Listen {
			want["listen."+typ] = port(t, addr) + "/tcp"
		}
		if c.TURN.Listen != "" {
			want["turn.listen (udp)"] = port(t, c.TURN.Listen) + "/udp"
			want["turn.listen (tcp)"] = port(t, c.TURN.Listen) + "/tcp"
		}
		if c.TURN.TLSListen != "" {
			want["turn.tls_listen"] = port(t, c.TURN.TLSListen) + "/tcp"
		}
		if c.Admin.Listen != "" {
			want["admin.listen"] = port(t, c.Admin.Listen) + "/tcp"
		}
		for key, p := range want {
			if !exposed[p] {
				t.Errorf("%s: %s is on %s, which the Dockerfile does not EXPOSE", filepath.Base(path), key, p)
			}
		}
	}
}

func port(t *testing.T, addr string) string {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		t.Fatalf("%q has no port", addr)
	}
	return addr[i+1:]
}
