package detect

import (
	"crypto/tls"
	"flag"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/pion/stun/v3"
)

var record = flag.Bool("record", false, "record the fixtures in testdata from real clients")

// capture listens on loopback, runs client against the address and
// returns the first bytes the client sent (what arrives in one second, at
// most 16 KiB).
func capture(t *testing.T, client func(addr string)) []byte {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 16<<10)
		n := 0
		for n < len(buf) {
			m, err := c.Read(buf[n:])
			n += m
			if err != nil {
				break
			}
		}
		got <- buf[:n]
	}()
	client(ln.Addr().String())
	return <-got
}

// TestRecordFixtures writes testdata from real clients when run with
// -record: crypto/tls's, openssl's and curl's ClientHellos, curl's plain
// HTTP request, go-ldap's simple bind, pion's STUN binding request. The
// SIP REGISTER (sipp's form) and the H.323 RRQ (protocols/h323's fixture)
// and ldapwhoami's bind (protocols/ldap's) are kept as they are.
func TestRecordFixtures(t *testing.T) {
	if !*record {
		t.Skip("run with -record to record the fixtures again")
	}
	write := func(name string, b []byte) {
		if len(b) == 0 {
			t.Fatalf("%s: nothing captured", name)
		}
		if err := os.WriteFile(filepath.Join("testdata", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go-clienthello.bin", capture(t, func(addr string) {
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "hq.example.com", NextProtos: []string{"h2", "http/1.1"}})
		if err == nil {
			c.Close()
		}
	}))
	write("openssl-clienthello.bin", capture(t, func(addr string) {
		cmd := exec.Command("openssl", "s_client", "-connect", addr, "-servername", "hq.example.com")
		cmd.Stdin = nil
		cmd.Run()
	}))
	write("curl-clienthello.bin", capture(t, func(addr string) {
		exec.Command("curl", "-sk", "--max-time", "2", "https://"+addr+"/").Run()
	}))
	write("curl-http.txt", capture(t, func(addr string) {
		exec.Command("curl", "-s", "--max-time", "2", "-H", "Host: hq.example.com", "http://"+addr+"/PBX0/MY/").Run()
	}))
	write("go-ldap-bind.ber", capture(t, func(addr string) {
		c, err := ldap.DialURL("ldap://"+addr, ldap.DialWithDialer(&net.Dialer{Timeout: time.Second}))
		if err != nil {
			return
		}
		c.SetTimeout(time.Second)
		c.Bind(`example.com\alice`, "secret")
		c.Close()
	}))
	write("pion-stun-binding.bin", capture(t, func(addr string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer c.Close()
		c.Write(stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint).Raw)
		io.Copy(io.Discard, c)
	}))
}
