package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestStopWithPhoneConnected: SIGTERM with a SIP phone registered through
// gatehouse (its TCP connection held open, as phones do) closes that
// connection at once and exits, rather than waiting shutdown_timeout (one
// hour here) for the phone to hang up.
func TestStopWithPhoneConnected(t *testing.T) {
	// The registrar: it answers each REGISTER with 200 and keeps the
	// connection, as a PBX does.
	pbx, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer func() { pbx.Close(); wg.Wait() }()
	wg.Go(func() {
		for {
			c, err := pbx.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				var head []string
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line != "\r\n" {
						head = append(head, line)
						continue
					}
					var via, from, to, callID, cseq string
					for _, h := range head {
						switch name, _, _ := strings.Cut(h, ":"); strings.ToLower(name) {
						case "via":
							via = h
						case "from":
							from = h
						case "to":
							to = h
						case "call-id":
							callID = h
						case "cseq":
							cseq = h
						}
					}
					fmt.Fprintf(c, "SIP/2.0 200 OK\r\n%s%s%s;tag=pbx\r\n%s%sContent-Length: 0\r\n\r\n",
						via, from, strings.TrimRight(to, "\r\n"), callID, cseq)
					head = nil
				}
			})
		}
	})
	_, pport, _ := net.SplitHostPort(pbx.Addr().String())
	addr := freeAddr(t)
	in := start(t, fmt.Sprintf(`listen:
  sip: %q
services:
  - {name: example.com, target: 127.0.0.1, ports: {sip: %s}}
limits:
  shutdown_timeout: 1h
`, addr, pport), addr)

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	phone, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	local := phone.LocalAddr().String()
	fmt.Fprintf(phone, "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP %s;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n"+
		"From: <sip:alice@example.com>;tag=a\r\nTo: <sip:alice@example.com>\r\nCall-ID: stop-1\r\nCSeq: 1 REGISTER\r\n"+
		"Contact: <sip:alice@%s;transport=tcp>\r\nContent-Length: 0\r\n\r\n", local, local)
	br := bufio.NewReader(phone)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "SIP/2.0 200") {
		t.Fatalf("REGISTER: %q %v", line, err)
	}

	in.signal(t, syscall.SIGTERM)
	select {
	case err := <-in.done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
		in.done <- nil
	case <-time.After(30 * time.Second): // far below shutdown_timeout
		t.Fatalf("gatehouse still runs 30s after SIGTERM with a phone connected:\n%s", in.log)
	}
	phone.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(br); err != nil {
		t.Errorf("the phone's connection was not closed: %v", err)
	}
	if strings.Contains(in.log.String(), "msg=refused client=127.0.0.2") { // (127.0.0.1 is start's probe)
		t.Errorf("the stop was counted as a refusal:\n%s", in.log)
	}
}
