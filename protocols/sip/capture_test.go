package sip

import (
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
)

var update = flag.Bool("update", false, "capture the testdata/*.client and *.target streams afresh from sipgo and sipp")

// TestCaptureFixtures records the two byte streams of real conversations
// into testdata/NAME.client and testdata/NAME.target: sipgo phones talking to
// the sipgo PBX of peers_test.go, and sipp's default uac scenario calling its
// default uas. The fixture tests replay them through Sniffer and Watcher.
func TestCaptureFixtures(t *testing.T) {
	if !*update {
		t.Skip("fixtures are captured only with -update")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	capture(t, "sipgo-register", func(dest string) {
		p := newPhone(t, "", dest, "alice", "example.com")
		defer p.ua.Close()
		expectStatus(t, "REGISTER", 200)(p.register(ctx, "alice-secret"))
		expectStatus(t, "OPTIONS", 200)(p.options(ctx))
		expectStatus(t, "REGISTER with a wrong password", 401)(p.register(ctx, "guess"))
	}, startPBX(t, users).addr)

	capture(t, "sipgo-invite", func(dest string) {
		p := newPhone(t, "", dest, "bob", "Example.COM")
		defer p.ua.Close()
		expectStatus(t, "INVITE", 200)(p.call(ctx, "alice", "bob-secret"))
		expectStatus(t, "INVITE with a wrong password", 403)(p.call(ctx, "alice", "guess"))
	}, startPBX(t, users).addr)

	capture(t, "sipgo-compact", func(dest string) {
		p := newPhone(t, "", dest, "alice", "example.com")
		p.compact = true
		defer p.ua.Close()
		expectStatus(t, "REGISTER", 200)(p.register(ctx, "alice-secret"))
	}, startPBX(t, users).addr)

	// sipgo's client sends no keep-alives of its own: ping by hand between
	// two requests sipgo writes, and record the pong its server sends.
	capture(t, "sipgo-keepalive", func(dest string) {
		c, err := net.Dial("tcp", dest)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		ask := func() {
			req := sipmsg.NewRequest(sipmsg.OPTIONS, sipmsg.Uri{User: "pbx", Host: "example.com"})
			via := &sipmsg.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "TCP", Host: "127.0.0.1"}
			via.Params.Add("branch", sipmsg.GenerateBranch())
			req.AppendHeader(via)
			from := &sipmsg.FromHeader{Address: sipmsg.Uri{User: "alice", Host: "example.com"}}
			from.Params.Add("tag", sipmsg.GenerateTagN(8))
			req.AppendHeader(from)
			req.AppendHeader(&sipmsg.ToHeader{Address: sipmsg.Uri{User: "pbx", Host: "example.com"}})
			id := sipmsg.CallIDHeader(sipmsg.GenerateTagN(16))
			req.AppendHeader(&id)
			req.AppendHeader(&sipmsg.CSeqHeader{SeqNo: 1, MethodName: sipmsg.OPTIONS})
			req.SetBody(nil)
			c.Write([]byte(req.String()))
			stream := sipmsg.NewParser().NewSIPStream()
			buf := make([]byte, 4096)
			for {
				msg, _, err := stream.ParseNext()
				if err == nil {
					if res, ok := msg.(*sipmsg.Response); !ok || res.StatusCode != 200 {
						t.Fatalf("OPTIONS answered %v", msg.String())
					}
					return
				}
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatal(err)
				}
				n, err := c.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				stream.Write(buf[:n])
			}
		}
		ask()
		c.Write([]byte("\r\n\r\n"))
		pong := make([]byte, 2)
		if _, err := io.ReadFull(c, pong); err != nil || string(pong) != "\r\n" {
			t.Fatalf("pong: %q, %v", pong, err)
		}
		ask()
	}, startPBX(t, users).addr)

	if _, err := exec.LookPath("sipp"); err != nil {
		t.Fatal("sipp (Debian package sip-tester) is needed to capture its fixtures")
	}
	uas := freePort(t)
	srv := exec.CommandContext(ctx, "sipp", "-sn", "uas", "-t", "t1", "-i", "127.0.0.1", "-p", uas, "-m", "1", "-nostdin")
	srv.Dir = t.TempDir() // sipp writes its logs beside it
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Wait()
	testpeer.WaitListening(t, "127.0.0.1:"+uas)
	capture(t, "sipp-uac", func(dest string) {
		uac := exec.CommandContext(ctx, "sipp", "-sn", "uac", "-t", "t1", "-i", "127.0.0.1", "-m", "1", "-nostdin", dest)
		uac.Dir = t.TempDir()
		if out, err := uac.CombinedOutput(); err != nil {
			t.Fatalf("sipp uac: %v\n%s", err, out)
		}
	}, "127.0.0.1:"+uas)
}

// capture runs talk against a recorder in front of target and writes both
// streams once the connection is over.
func capture(t *testing.T, name string, talk func(dest string), target string) {
	rec := startRecorder(t, target)
	talk(rec.ln.Addr().String())
	select {
	case <-rec.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the connection did not end", name)
	}
	for suffix, b := range map[string][]byte{".client": rec.client.Bytes(), ".target": rec.server.Bytes()} {
		if err := os.WriteFile(filepath.Join("testdata", name+suffix), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
