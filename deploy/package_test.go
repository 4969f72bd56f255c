package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
)

// needRootCI skips a test that must run as root (dpkg chowns to the service
// user, the test runs gatehouse as that user) on a developer's machine, and
// fails it under CI=true, which runs as root.
func needRootCI(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI runs .ci/run as root; this test needs it")
	}
	t.Skip("needs root: dpkg gives files to the user gatehouse, and gatehouse runs as that user")
}

// makeTarget runs `make TARGET VAR=…` at the repository root, as CI and an
// administrator would, and fails the test with its output on error.
func makeTarget(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("make", append([]string{"-s", "-C", root}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func must(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// throwawayRoot is an empty system for `dpkg --root`: a dpkg database that
// holds only this machine's systemd (the package's one dependency, provided
// as systemd-sysusers), and the units systemd-analyze needs (sysinit.target
// and friends) under lib/, where the package puts nothing. Maintainer scripts
// run chrootless, with this machine's tools, on DPKG_ROOT.
type throwawayRoot struct {
	dir string
}

func newThrowawayRoot(t *testing.T) *throwawayRoot {
	t.Helper()
	// Not t.TempDir: its 0700 parents would keep the service user out.
	dir, err := os.MkdirTemp("", "gatehouse-root-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "var/log", "etc", "lib/systemd"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	status := must(t, "dpkg-query", "-s", "systemd")
	for name, data := range map[string]string{
		"var/lib/dpkg/status":            status,
		"var/lib/dpkg/available":         "",
		"var/lib/dpkg/info/systemd.list": "",
		"etc/passwd":                     "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":                      "root:x:0:\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	must(t, "cp", "-a", "/lib/systemd/system", filepath.Join(dir, "lib/systemd/"))
	return &throwawayRoot{dir: dir}
}

func (r *throwawayRoot) path(p string) string { return filepath.Join(r.dir, p) }

// dpkg runs dpkg on the root; it returns the output and the error.
func (r *throwawayRoot) dpkg(args ...string) (string, error) {
	cmd := exec.Command("dpkg", append([]string{"--root=" + r.dir, "--force-script-chrootless"}, args...)...)
	cmd.Stdin = nil // no terminal: a conffile prompt would fail, not hang
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (r *throwawayRoot) mustDpkg(t *testing.T, args ...string) string {
	t.Helper()
	out, err := r.dpkg(args...)
	if err != nil {
		t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// installed returns the package's dpkg status and version ("" when unknown).
func (r *throwawayRoot) installed(t *testing.T) (status, version string) {
	t.Helper()
	out, err := exec.Command("dpkg-query", "--root="+r.dir, "-W", "-f", "${db:Status-Abbrev}|${Version}", "gatehouse").Output()
	if err != nil {
		return "", ""
	}
	s, v, _ := strings.Cut(string(out), "|")
	return strings.TrimSpace(s), v
}

// account returns the numeric ids and the passwd fields of name in the root.
func (r *throwawayRoot) account(t *testing.T, name string) (uid, gid int, fields []string) {
	t.Helper()
	data, err := os.ReadFile(r.path("etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) == 7 && f[0] == name {
			uid, _ = strconv.Atoi(f[2])
			gid, _ = strconv.Atoi(f[3])
			return uid, gid, f
		}
	}
	t.Fatalf("no user %s in the root's /etc/passwd:\n%s", name, data)
	return 0, 0, nil
}

// owner returns the owner, group and permission bits of a path in the root.
func (r *throwawayRoot) owner(t *testing.T, p string) (uid, gid int, mode fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(r.path(p))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid), fi.Mode().Perm()
}

// debs builds the packages the test installs: version 1.0.0 for both
// architectures, exactly as `make deb` does, and 1.1.0 for this machine's.
// It returns this machine's two and the other architecture's 1.0.0.
func debs(t *testing.T) (v1, v2, v1other string) {
	t.Helper()
	testpeer.Program(t, "dpkg-deb", "dpkg")
	dir := t.TempDir()
	makeTarget(t, "deb", "VERSION=v1.0.0", "DIST="+dir)
	makeTarget(t, "deb", "VERSION=v1.1.0", "DEB_ARCHS="+runtime.GOARCH, "DIST="+dir)
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	v1 = filepath.Join(dir, "gatehouse_1.0.0_"+runtime.GOARCH+".deb")
	v2 = filepath.Join(dir, "gatehouse_1.1.0_"+runtime.GOARCH+".deb")
	v1other = filepath.Join(dir, "gatehouse_1.0.0_"+other+".deb")
	for _, p := range []string{v1, v2, v1other} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("make deb did not write %s: %v", p, err)
		}
	}
	return v1, v2, v1other
}

// TestDebianPackage builds the packages with `make deb`, runs lintian on
// them, installs version 1.0.0 with dpkg into a throwaway root, checks
// files, user, ownership and `systemd-analyze verify` of the installed
// unit, upgrades to 1.1.0 with gatehouse running (TestDebianUpgrade's
// part, below), then removes and purges it and checks that nothing is left.
func TestDebianPackage(t *testing.T) {
	needRootCI(t)
	testpeer.Program(t, "lintian", "lintian")
	analyze := testpeer.Program(t, "systemd-analyze", "systemd")
	testpeer.Program(t, "systemd-sysusers", "systemd")
	v1, v2, v1other := debs(t)

	t.Run("lintian", func(t *testing.T) {
		for _, deb := range []string{v1, v1other, v2} {
			// Errors and warnings fail; overrides carry their reason in
			// deploy/debian/lintian-overrides.
			cmd := exec.Command("lintian", "--fail-on", "error,warning", deb)
			out, err := cmd.CombinedOutput()
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") {
					t.Errorf("lintian %s: %s", filepath.Base(deb), line)
				}
			}
			if err != nil {
				t.Errorf("lintian %s: %v\n%s", filepath.Base(deb), err, out)
			}
		}
	})

	t.Run("contents", func(t *testing.T) {
		list := must(t, "dpkg-deb", "--contents", v1)
		for _, want := range []string{
			"-rwxr-xr-x root/root .* ./usr/bin/gatehouse",
			"-rw-r--r-- root/root .* ./usr/lib/systemd/system/gatehouse.service",
			"-rw-r--r-- root/root .* ./usr/lib/sysusers.d/gatehouse.conf",
			"-rw-r----- root/root .* ./etc/gatehouse/gatehouse.yaml",
			"drwxr-x--- root/root .* ./var/lib/gatehouse/",
			"./usr/share/doc/gatehouse/copyright",
			"./usr/share/doc/gatehouse/changelog.gz",
			"./usr/share/doc/gatehouse/deploy.md.gz",
			"./usr/share/doc/gatehouse/README.md.gz",
			"./usr/share/doc/gatehouse/examples/single-pbx.yaml",
			"./usr/share/man/man1/gatehouse.1.gz",
		} {
			if !matchLine(list, want) {
				t.Errorf("package has no line like %q:\n%s", want, list)
			}
		}
		if got := must(t, "dpkg-deb", "--field", v1, "Version", "Architecture"); got != "Version: 1.0.0\nArchitecture: "+runtime.GOARCH+"\n" {
			t.Errorf("dpkg-deb --field = %q", got)
		}
		if got, err := exec.Command("dpkg-deb", "--field", v1other, "Architecture").Output(); err != nil ||
			!strings.HasSuffix(v1other, "_"+strings.TrimSpace(string(got))+".deb") {
			t.Errorf("%s: Architecture %q (%v)", filepath.Base(v1other), got, err)
		}
		conffiles := must(t, "sh", "-c", "dpkg-deb --ctrl-tarfile \"$1\" | tar -xO ./conffiles", "_", v1)
		if conffiles != "/etc/gatehouse/gatehouse.yaml\n" {
			t.Errorf("conffiles = %q", conffiles)
		}
		// The installed binary is the static one, stamped with the version.
		x := t.TempDir()
		must(t, "dpkg-deb", "-x", v1, x)
		if why, err := dynamicDeps(filepath.Join(x, "usr/bin/gatehouse")); err != nil || len(why) > 0 {
			t.Errorf("packaged binary not static: %v %v", why, err)
		}
		if out := must(t, filepath.Join(x, "usr/bin/gatehouse"), "version"); out != "gatehouse v1.0.0\n" {
			t.Errorf("packaged gatehouse version = %q", out)
		}
		unit, err := os.ReadFile(filepath.Join(x, "usr/lib/systemd/system/gatehouse.service"))
		if err != nil {
			t.Fatal(err)
		}
		kv := unitSettings(t, unit)
		if !slices.Contains(kv["ExecStart"], "/usr/bin/gatehouse run -config "+installedConf) ||
			!slices.Contains(kv["ExecStartPre"], "/usr/bin/gatehouse check -config "+installedConf) {
			t.Errorf("packaged unit does not run /usr/bin/gatehouse: %q %q", kv["ExecStart"], kv["ExecStartPre"])
		}
	})

	r := newThrowawayRoot(t)
	t.Run("install", func(t *testing.T) {
		out := r.mustDpkg(t, "-i", v1)
		if st, v := r.installed(t); st != "ii" || v != "1.0.0" {
			t.Fatalf("after dpkg -i: status %q version %q\n%s", st, v, out)
		}
		// The shipped configuration names certificates that are not there
		// yet: postinst says so and starts nothing.
		if !strings.Contains(out, "tls.certificates[0].cert") || !strings.Contains(out, "not started") {
			t.Errorf("first install: postinst did not report the failing check and not starting:\n%s", out)
		}
		uid, gid, pw := r.account(t, "gatehouse")
		if uid == 0 || uid >= 1000 || pw[5] != "/var/lib/gatehouse" || pw[6] != "/usr/sbin/nologin" {
			t.Errorf("user gatehouse = %q, want a system user with home /var/lib/gatehouse and no login", pw)
		}
		grp, _ := os.ReadFile(r.path("etc/group"))
		if !strings.Contains(string(grp), fmt.Sprintf("gatehouse:x:%d:", gid)) {
			t.Errorf("no group gatehouse %d:\n%s", gid, grp)
		}
		for _, c := range []struct {
			path     string
			uid, gid int
			mode     fs.FileMode
		}{
			{"var/lib/gatehouse", uid, gid, 0o750},
			{"etc/gatehouse", 0, gid, 0o750},
			{"etc/gatehouse/tls", 0, gid, 0o750},
			{"etc/gatehouse/gatehouse.yaml", 0, gid, 0o640},
			{"usr/bin/gatehouse", 0, 0, 0o755},
		} {
			if u, g, m := r.owner(t, c.path); u != c.uid || g != c.gid || m != c.mode {
				t.Errorf("/%s: %d:%d %o, want %d:%d %o", c.path, u, g, m, c.uid, c.gid, c.mode)
			}
		}
		// Enabled as dh_installsystemd would: the symlink and deb-systemd-helper's state.
		if l, err := os.Readlink(r.path("etc/systemd/system/multi-user.target.wants/gatehouse.service")); err != nil ||
			l != "/usr/lib/systemd/system/gatehouse.service" {
			t.Errorf("unit not enabled: %q %v", l, err)
		}
		if _, err := os.Stat(r.path("usr/share/doc/gatehouse/examples/master-slave.yaml")); err != nil {
			t.Error(err)
		}
	})

	t.Run("systemd-analyze verify", func(t *testing.T) {
		cmd := exec.Command(analyze, "verify", "--root="+r.dir, "gatehouse.service")
		cmd.Env = append(os.Environ(), "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0")
		out, err := cmd.CombinedOutput()
		if err != nil || strings.Contains(string(out), "gatehouse") {
			t.Errorf("systemd-analyze verify --root gatehouse.service: %v\n%s", err, out)
		}
		// The check is real: a unit whose binary is missing fails it.
		bin := r.path("usr/bin/gatehouse")
		if err := os.Rename(bin, bin+".away"); err != nil {
			t.Fatal(err)
		}
		defer os.Rename(bin+".away", bin)
		cmd = exec.Command(analyze, "verify", "--root="+r.dir, "gatehouse.service")
		cmd.Env = append(os.Environ(), "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0")
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("systemd-analyze verify passed a unit without its binary:\n%s", out)
		}
	})

	t.Run("upgrade", func(t *testing.T) { debianUpgrade(t, r, v2) })

	t.Run("remove and purge", func(t *testing.T) {
		r.mustDpkg(t, "-r", "gatehouse")
		if st, _ := r.installed(t); st != "rc" {
			t.Errorf("after dpkg -r: status %q, want rc (config-files)", st)
		}
		for _, gone := range []string{"usr/bin/gatehouse", "usr/lib/systemd/system/gatehouse.service"} {
			if _, err := os.Lstat(r.path(gone)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("/%s still there after remove (%v)", gone, err)
			}
		}
		for _, kept := range []string{"etc/gatehouse/gatehouse.yaml", "var/lib/gatehouse/state.json"} {
			if _, err := os.Stat(r.path(kept)); err != nil {
				t.Errorf("remove must keep /%s: %v", kept, err)
			}
		}
		r.mustDpkg(t, "-P", "gatehouse")
		if st, _ := r.installed(t); st != "" && st != "un" && st != "pn" {
			t.Errorf("after dpkg -P: status %q", st)
		}
		// Nothing of the package is left; the user stays (Debian policy:
		// files may still belong to it).
		var left []string
		filepath.WalkDir(r.dir, func(p string, d fs.DirEntry, err error) error {
			rel, _ := filepath.Rel(r.dir, p)
			switch {
			case err != nil:
				t.Error(err)
			case rel == "." || d.IsDir():
			case strings.HasPrefix(rel, "var/lib/dpkg/"), strings.HasPrefix(rel, "var/log/"),
				strings.HasPrefix(rel, "lib/systemd/system/"),
				slices.Contains([]string{"etc/passwd", "etc/group", "etc/shadow", "etc/gshadow",
					"etc/passwd-", "etc/group-", "etc/shadow-", "etc/gshadow-", "etc/.pwd.lock"}, rel):
			default:
				left = append(left, rel)
			}
			return nil
		})
		for _, dir := range []string{"etc/gatehouse", "var/lib/gatehouse"} {
			if _, err := os.Stat(r.path(dir)); !errors.Is(err, fs.ErrNotExist) {
				left = append(left, dir+"/")
			}
		}
		if len(left) > 0 {
			t.Errorf("left after purge: %q", left)
		}
	})
}

func matchLine(list, pattern string) bool {
	parts := strings.Split(pattern, " .* ")
	for _, line := range strings.Split(list, "\n") {
		if len(parts) == 2 {
			if strings.HasPrefix(line, parts[0]) && strings.HasSuffix(line, parts[1]) {
				return true
			}
		} else if strings.HasSuffix(line, pattern) {
			return true
		}
	}
	return false
}

// debianUpgrade: gatehouse 1.0.0 runs from the throwaway root as the
// service user, with a phone's SIP connection established and a client
// blacklisted. Then:
//
//  1. dpkg -i 1.1.0 while the configuration has an error the new version
//     refuses: postinst runs the new binary's check, says why and leaves
//     the running gatehouse alone (it keeps serving the phone);
//  2. the file fixed, dpkg -i 1.1.0 again: postinst's check passes. No
//     systemd runs here (PID 1 is not systemd), so the maintainer script
//     asks no service manager for the restart; the test does what
//     `systemctl restart gatehouse` does with the unit: ExecStartPre's
//     check, SIGTERM, wait, start. The phone's connection is closed
//     cleanly (EOF, not a reset) after limits.shutdown_timeout, it
//     reconnects and registers with 1.1.0, the blacklisted client is still
//     blocked, and the administrator's conffile and the state file are
//     the ones from before.
func debianUpgrade(t *testing.T, r *throwawayRoot, v2 string) {
	if st, v := r.installed(t); st != "ii" || v != "1.0.0" {
		t.Fatalf("upgrade needs 1.0.0 installed: %q %q", st, v)
	}
	uid, gid, _ := r.account(t, "gatehouse")
	pbx := startSIPServer(t)
	sipAddr := freeLoopback(t)
	state := r.path("var/lib/gatehouse/state.json")
	conf := r.path("etc/gatehouse/gatehouse.yaml")
	good := fmt.Sprintf(`# the administrator's configuration
listen:
  sip: %q
services:
  - name: example.com
    target: 127.0.0.1
    ports: {sip: %d}
blacklist:
  threshold: 2
  expiration: 10m
  state: %s
limits:
  shutdown_timeout: 2s
`, sipAddr, pbx.Port, state)
	// Written in place, as an editor does: dpkg knows the file by its path
	// and keeps the administrator's version on upgrade.
	if err := os.WriteFile(conf, []byte(good), 0o640); err != nil {
		t.Fatal(err)
	}

	old := startService(t, r, uid, gid, sipAddr)
	phone := dialSIP(t, "127.0.0.2", sipAddr)
	if code := phone.register(t, "example.com"); code != 200 {
		t.Fatalf("phone's REGISTER through 1.0.0: %d", code)
	}
	// 127.0.0.3 is served, then blacklisted for asking for a domain gatehouse
	// does not know (each refusal counts; threshold 2).
	if code := dialSIP(t, "127.0.0.3", sipAddr).register(t, "example.com"); code != 200 {
		t.Fatalf("127.0.0.3 before blacklisting: %d", code)
	}
	for i := 0; i < 3; i++ {
		dialSIP(t, "127.0.0.3", sipAddr).register(t, "unknown.example")
	}
	if code := dialSIP(t, "127.0.0.3", sipAddr).register(t, "example.com"); code != 0 {
		t.Fatalf("127.0.0.3 not blacklisted: got %d", code)
	}

	// 1. An upgrade onto a file the new version refuses.
	bad := good + "blacklist_typo: 1\n"
	if err := os.WriteFile(conf, []byte(bad), 0o640); err != nil {
		t.Fatal(err)
	}
	out := r.mustDpkg(t, "-i", v2)
	if line := strings.Count(good, "\n") + 1; !strings.Contains(out, fmt.Sprintf("%s:%d: blacklist_typo: unknown key", conf, line)) || !strings.Contains(out, "NOT restarted") {
		t.Errorf("upgrade with a broken file: postinst did not name the error and refuse to restart:\n%s", out)
	}
	if st, v := r.installed(t); st != "ii" || v != "1.1.0" {
		t.Errorf("after the upgrade: %q %q (postinst must not fail the upgrade)", st, v)
	}
	if code := phone.register(t, "example.com"); code != 200 {
		t.Fatalf("after the refused restart the running 1.0.0 must keep serving the phone: %d", code)
	}
	if old.exited() {
		t.Fatalf("gatehouse 1.0.0 stopped on the refused upgrade:\n%s", old.log)
	}

	// 2. The file fixed: the upgrade path again, then the unit's restart.
	if err := os.WriteFile(conf, []byte(good), 0o640); err != nil {
		t.Fatal(err)
	}
	out = r.mustDpkg(t, "-i", v2)
	if strings.Contains(out, "NOT restarted") || strings.Contains(out, "gatehouse check") {
		t.Errorf("upgrade with a good file: postinst complained:\n%s", out)
	}
	if data, err := os.ReadFile(conf); err != nil || string(data) != good {
		t.Errorf("conffile after the upgrade is not the administrator's (%v):\n%s", err, data)
	}
	if m, _ := filepath.Glob(conf + ".dpkg-*"); len(m) > 0 {
		t.Errorf("upgrade left %q: the conffile did not change between versions", m)
	}

	// systemctl restart: ExecStartPre, then stop (SIGTERM, TimeoutStopSec=45s), then start.
	must(t, r.path("usr/bin/gatehouse"), "check", "-config", conf)
	stopped := time.Now()
	if err := old.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The phone's connection ends with a FIN after the drain, not a reset.
	phone.conn.SetReadDeadline(time.Now().Add(45 * time.Second))
	n, err := phone.conn.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("phone's connection at the restart: read %d bytes, %v; want a clean close (EOF)", n, err)
	}
	if err := old.wait(45 * time.Second); err != nil {
		t.Fatalf("gatehouse 1.0.0 on SIGTERM: %v\n%s", err, old.log)
	}
	t.Logf("stopped %v after SIGTERM", time.Since(stopped).Round(time.Millisecond))
	if u, _, _ := r.owner(t, "var/lib/gatehouse/state.json"); u != uid {
		t.Errorf("state file owned by %d, want the service user %d", u, uid)
	}
	if data, err := os.ReadFile(state); err != nil || !strings.Contains(string(data), "127.0.0.3") {
		t.Errorf("state file after stop has no entry for 127.0.0.3 (%v):\n%s", err, data)
	}

	startService(t, r, uid, gid, sipAddr)
	if v := must(t, r.path("usr/bin/gatehouse"), "version"); v != "gatehouse v1.1.0\n" {
		t.Errorf("installed gatehouse version after upgrade = %q", v)
	}
	phone = dialSIP(t, "127.0.0.2", sipAddr)
	if code := phone.register(t, "example.com"); code != 200 {
		t.Errorf("phone's REGISTER after reconnecting to 1.1.0: %d", code)
	}
	if code := dialSIP(t, "127.0.0.3", sipAddr).register(t, "example.com"); code != 0 {
		t.Errorf("127.0.0.3's block did not survive the upgrade: got %d", code)
	}
}

// service is gatehouse started from the throwaway root as the service user.
type service struct {
	cmd  *exec.Cmd
	log  *testpeer.Log
	done chan error
}

func startService(t *testing.T, r *throwawayRoot, uid, gid int, addr string) *service {
	t.Helper()
	s := &service{log: &testpeer.Log{}, done: make(chan error, 1)}
	s.cmd = exec.Command(r.path("usr/bin/gatehouse"), "run", "-config", r.path("etc/gatehouse/gatehouse.yaml"))
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if !s.exited() {
			s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("gatehouse log:\n%s", s.log)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return s
		}
		if s.exited() || time.Now().After(deadline) {
			t.Fatalf("gatehouse did not listen on %s:\n%s", addr, s.log)
		}
	}
}

// exited reports whether the process has ended (and then keeps its result).
func (s *service) exited() bool {
	select {
	case err := <-s.done:
		s.done <- err
		return true
	default:
		return false
	}
}

// wait waits for the process's exit; an exit status other than 0 is an error.
func (s *service) wait(d time.Duration) error {
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(d):
		return fmt.Errorf("still running after %v", d)
	}
}

func freeLoopback(t *testing.T) string {
	return "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
}

// startSIPServer runs a PBX's SIP registrar (sipgo) on loopback TCP that
// accepts every REGISTER, until the test ends.
func startSIPServer(t *testing.T) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("pbx"), sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	srv.OnRegister(func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
		tx.Respond(sipmsg.NewResponseFromRequest(req, 200, "OK", nil))
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ServeTCP(ln) // returns once ln is closed
	}()
	t.Cleanup(func() {
		ln.Close()
		ua.Close()
		<-done
	})
	return ln.Addr().(*net.TCPAddr)
}

// sipPhone is one TCP connection of a phone, from a loopback address of its own.
type sipPhone struct {
	src  string
	conn net.Conn
	rd   *bufio.Reader
	cseq int
}

func dialSIP(t *testing.T, src, addr string) *sipPhone {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &sipPhone{src: src, conn: c, rd: bufio.NewReader(c)}
}

// register sends a REGISTER for alice@domain and returns the status code
// of the answer, or 0 when the connection closed without one.
func (p *sipPhone) register(t *testing.T, domain string) int {
	t.Helper()
	p.cseq++
	msg := fmt.Sprintf("REGISTER sip:%[1]s SIP/2.0\r\n"+
		"Via: SIP/2.0/TCP %[2]s:5060;branch=z9hG4bK-%[3]d-%[4]d\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:alice@%[1]s>;tag=t%[3]d\r\n"+
		"To: <sip:alice@%[1]s>\r\n"+
		"Call-ID: upgrade-%[4]d@%[2]s\r\n"+
		"CSeq: %[3]d REGISTER\r\n"+
		"Contact: <sip:alice@%[2]s:5060;transport=tcp>\r\n"+
		"Expires: 600\r\n"+
		"Content-Length: 0\r\n\r\n", domain, p.src, p.cseq, time.Now().UnixNano())
	p.conn.SetDeadline(time.Now().Add(10 * time.Second))
	defer p.conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(p.conn, msg); err != nil {
		return 0
	}
	status, err := p.rd.ReadString('\n')
	if err != nil {
		return 0
	}
	var head bytes.Buffer
	for {
		line, err := p.rd.ReadString('\n')
		if err != nil {
			t.Fatalf("answer to REGISTER cut off: %v", err)
		}
		if line == "\r\n" {
			break
		}
		head.WriteString(line)
	}
	f := strings.Fields(status)
	if len(f) < 2 || f[0] != "SIP/2.0" {
		t.Fatalf("not a SIP answer: %q", status)
	}
	code, _ := strconv.Atoi(f[1])
	return code
}
