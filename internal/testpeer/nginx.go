package testpeer

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Nginx runs Debian's nginx in the foreground as one process until the test
// ends, with http inside its http block (log formats, access logs, server
// blocks). "@DIR@" in http stands for nginx's own temporary directory, which
// holds its pid, error log and temporary files and is returned, so that a
// test can put an access log there and read what the target received.
// wrap, when given, prefixes the command ("ip", "netns", "exec", NS). The
// caller waits for the listener (WaitListening) where it can reach it.
func Nginx(t testing.TB, http string, wrap ...string) string {
	t.Helper()
	nginx := Program(t, "nginx", "nginx")
	dir := t.TempDir()
	conf := strings.ReplaceAll(`daemon off;
master_process off;
worker_processes 1;
pid @DIR@/nginx.pid;
error_log @DIR@/error.log;
events { worker_connections 256; }
http {
	client_body_temp_path @DIR@/body;
	proxy_temp_path @DIR@/proxy;
	fastcgi_temp_path @DIR@/fastcgi;
	uwsgi_temp_path @DIR@/uwsgi;
	scgi_temp_path @DIR@/scgi;
`+http+`
}
`, "@DIR@", dir)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(append([]string(nil), wrap...), nginx, "-p", dir, "-c", path)
	cmd := exec.Command(args[0], args[1:]...)
	out := &Log{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() && out.String() != "" {
			t.Logf("nginx:\n%s", out)
		}
	})
	return dir
}
