package ldap

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/protocols/ldap/internal/slapdtest"
)

var capture = flag.Bool("capture", false, "refresh testdata/*.ber from slapd and OpenLDAP's clients")

// TestCaptureFixtures records what OpenLDAP's command line clients send and
// what slapd answers, message by message, into testdata: the real-world
// fixtures of the table and fuzz tests. go test -run CaptureFixtures -capture
func TestCaptureFixtures(t *testing.T) {
	if !*capture {
		t.Skip("refreshes testdata only with -capture")
	}
	s := slapdtest.Start(t, slapdtest.Config{Suffix: "dc=example,dc=com", Users: []slapdtest.User{{UID: "alice", Password: "alice-pw"}}})
	caFile := s.CA.File
	alice := s.DN("alice")
	for _, c := range []struct {
		args []string
		// The messages to keep, by direction and index, and their file names.
		client, target map[int]string
	}{
		{args: []string{"ldapwhoami", "-x", "-D", alice, "-w", "alice-pw"},
			client: map[int]string{0: "ldapwhoami-bind-dn.ber", 1: "ldapwhoami-whoami.ber"},
			target: map[int]string{0: "slapd-bind-success.ber"}},
		{args: []string{"ldapwhoami", "-x", "-D", alice, "-w", "wrong"},
			target: map[int]string{0: "slapd-bind-invalid-credentials.ber"}},
		{args: []string{"ldapwhoami", "-x", "-D", `example.com\alice`, "-w", "alice-pw"},
			client: map[int]string{0: "ldapwhoami-bind-down-level.ber"},
			target: map[int]string{0: "slapd-bind-invalid-dn.ber"}},
		{args: []string{"ldapsearch", "-x", "-D", alice, "-w", "alice-pw", "-b", s.Suffix, "(uid=alice)"},
			client: map[int]string{1: "ldapsearch-search.ber", 2: "ldapsearch-unbind.ber"},
			target: map[int]string{1: "slapd-search-entry.ber", 2: "slapd-search-done.ber"}},
		{args: []string{"ldapsearch", "-x", "-b", s.Suffix, "(uid=alice)"},
			client: map[int]string{0: "ldapsearch-bind-anonymous.ber"}},
		{args: []string{"ldapwhoami", "-Y", "DIGEST-MD5", "-U", "alice", "-w", "alice-pw"},
			client: map[int]string{0: "ldapwhoami-sasl-digest-md5.ber"}},
		{args: []string{"ldapwhoami", "-x", "-ZZ", "-D", alice, "-w", "alice-pw"},
			client: map[int]string{0: "ldapwhoami-starttls.ber"},
			target: map[int]string{0: "slapd-starttls-success.ber"}},
	} {
		prog := slapdtest.Lookup(t, c.args[0], "ldap-utils")
		fromClient, fromTarget := record(t, s.Addr, func(addr string) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, prog, append(c.args[1:], "-H", "ldap://"+addr)...)
			cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+caFile)
			out, err := cmd.CombinedOutput()
			t.Logf("%v: %v\n%s", c.args, err, out)
		})
		keep := func(stream []byte, want map[int]string) {
			for i := 0; len(stream) > 0; i++ {
				n, err := frame(stream)
				if err != nil || n > len(stream) {
					return // TLS after StartTLS
				}
				if name := want[i]; name != "" {
					if err := os.WriteFile(filepath.Join("testdata", name), stream[:n], 0o644); err != nil {
						t.Fatal(err)
					}
					delete(want, i)
				}
				stream = stream[n:]
			}
			for _, name := range want {
				t.Errorf("%v: no message for %s", c.args, name)
			}
		}
		keep(fromClient, c.client)
		keep(fromTarget, c.target)
	}
}

// record relays one connection to target while run runs a client against
// the relay's address, and returns both directions' bytes.
func record(t *testing.T, target string, run func(addr string)) (fromClient, fromTarget []byte) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var up, down bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		tc, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer tc.Close()
		done := make(chan struct{})
		go func() {
			io.Copy(io.MultiWriter(c, &down), tc)
			c.Close()
			close(done)
		}()
		io.Copy(io.MultiWriter(tc, &up), c)
		tc.Close()
		<-done
	}()
	run(l.Addr().String())
	l.Close()
	wg.Wait()
	return up.Bytes(), down.Bytes()
}
