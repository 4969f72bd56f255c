// Command idleclient holds many idle TLS connections open through a proxy,
// so bench/idle.sh can compare what each held connection costs gatehouse
// and HAProxy in memory: phones hold their connection for hours and speak
// every 30–120 s.
//
//	idleclient hold -addr 127.0.0.1:8443 -proto https -n 10000 -sources 2-201
//	idleclient sip-target -listen 127.0.0.1:5060
//	idleclient h323-target -listen 127.0.0.1:1720
//
// hold dials n TLS connections, spread round-robin over the source
// addresses 127.0.0.<first>…127.0.0.<last>, sends one request on each
// (https: GET /small with the bench Host; sips: a REGISTER of the bench
// domain; h323s: the H.323 fixture of a phone's GRQ and RRQ for
// example.com tunnelled in a Facility, as innovaphone phones register)
// and reads its answer, then prints "held N" and keeps every
// connection open until stdin closes or SIGTERM arrives. A connection that
// fails is fatal: the figure would not mean what it says.
//
// sip-target is the SIP registrar behind both proxies: it answers every
// request with 200 OK (the Via, From, To, Call-ID and CSeq copied) and
// keeps the connection, as a PBX does for a registered phone.
// h323-target is the gatekeeper: it answers every TPKT packet with the
// RegistrationConfirm fixture and keeps the connection.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "hold":
		err = hold(os.Args[2:])
	case "sip-target":
		err = sipTarget(os.Args[2:])
	case "h323-target":
		err = h323Target(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "idleclient:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: idleclient hold -addr HOST:PORT -proto https|sips|h323s [-n N] [-sources FIRST-LAST] | sip-target -listen HOST:PORT | h323-target -listen HOST:PORT")
	os.Exit(2)
}

func hold(args []string) error {
	fs := flag.NewFlagSet("hold", flag.ExitOnError)
	addr := fs.String("addr", "", "proxy address")
	proto := fs.String("proto", "https", "https, sips or h323s")
	rrqFile := fs.String("rrq", "protocols/h323/testdata/grq_rrq.tpkt", "h323s: the TPKT packet sent (a Facility tunnelling GRQ and RRQ)")
	n := fs.Int("n", 10000, "connections to hold")
	sources := fs.String("sources", "2-201", "last octets of the 127.0.0.x source addresses, FIRST-LAST")
	host := fs.String("host", "bench.example.com", "HTTP Host, SIP domain and TLS server name")
	parallel := fs.Int("parallel", 32, "handshakes in flight")
	fs.Parse(args)
	if *proto == "h323s" {
		var err error
		if rrq, err = os.ReadFile(*rrqFile); err != nil {
			return err
		}
	}
	var lo, hi int
	if _, err := fmt.Sscanf(*sources, "%d-%d", &lo, &hi); err != nil || lo < 1 || hi > 254 || lo > hi {
		return fmt.Errorf("-sources %q: want FIRST-LAST within 1-254", *sources)
	}
	cfg := &tls.Config{ServerName: *host, InsecureSkipVerify: true, // the bench's own throwaway certificate
		ClientSessionCache: nil, CurvePreferences: []tls.CurveID{tls.X25519}}

	conns := make([]net.Conn, *n)
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for w := 0; w < *parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= *n {
					return
				}
				src := netip.AddrFrom4([4]byte{127, 0, 0, byte(lo + i%(hi-lo+1))})
				c, err := one(*addr, src, cfg, *proto, *host, i)
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("connection %d from %s: %w", i, src, err) })
					next.Store(int64(*n))
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if firstErr != nil {
		return firstErr
	}
	fmt.Printf("held %d\n", *n)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	eof := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(eof) }()
	select {
	case <-stop:
	case <-eof:
	}
	return nil
}

// one dials, sends the request and reads its answer.
func one(addr string, src netip.Addr, cfg *tls.Config, proto, host string, i int) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, cfg)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var req string
	switch proto {
	case "https":
		req = "GET /small HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: idleclient\r\n\r\n"
	case "sips":
		user := "phone" + strconv.Itoa(i)
		req = "REGISTER sips:" + host + " SIP/2.0\r\n" +
			"Via: SIP/2.0/TLS " + src.String() + ":5061;branch=z9hG4bK-" + user + "\r\n" +
			"Max-Forwards: 70\r\n" +
			"From: <sips:" + user + "@" + host + ">;tag=" + user + "\r\n" +
			"To: <sips:" + user + "@" + host + ">\r\n" +
			"Call-ID: " + user + "@" + src.String() + "\r\n" +
			"CSeq: 1 REGISTER\r\n" +
			"Contact: <sips:" + user + "@" + src.String() + ":5061;transport=tls>\r\n" +
			"Expires: 3600\r\nContent-Length: 0\r\n\r\n"
	case "h323s":
		if _, err := c.Write(rrq); err != nil {
			c.Close()
			return nil, err
		}
		if _, err := readTPKT(c); err != nil {
			c.Close()
			return nil, err
		}
		c.SetDeadline(time.Time{})
		return c, nil
	default:
		raw.Close()
		return nil, fmt.Errorf("-proto %q: want https, sips or h323s", proto)
	}
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, err
	}
	if err := readAnswer(c); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// readAnswer reads one HTTP or SIP response, head and Content-Length body,
// without keeping a reader buffer per held connection, and wants a 200.
func readAnswer(c net.Conn) error {
	var got []byte
	buf := make([]byte, 1024)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if i := bytes.Index(got, []byte("\r\n\r\n")); i >= 0 {
			head := string(got[:i])
			if !strings.HasPrefix(head, "HTTP/1.1 200 ") && !strings.HasPrefix(head, "SIP/2.0 200 ") {
				return fmt.Errorf("answered %q", strings.SplitN(head, "\r\n", 2)[0])
			}
			length := 0
			for _, line := range strings.Split(head, "\r\n")[1:] {
				k, v, _ := strings.Cut(line, ":")
				if strings.EqualFold(k, "content-length") || k == "l" {
					length, _ = strconv.Atoi(strings.TrimSpace(v))
				}
			}
			if len(got)-i-4 >= length {
				return nil
			}
		}
		if err != nil {
			return err
		}
	}
}

// rrq is what an h323s connection sends (-rrq).
var rrq []byte

// readTPKT reads one TPKT packet (RFC 1006: version 3, a reserved byte,
// the 16-bit length of the whole packet).
func readTPKT(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(hdr[2])<<8 | int(hdr[3])
	if hdr[0] != 3 || n < 4 {
		return nil, fmt.Errorf("not a TPKT packet: % x", hdr)
	}
	p := make([]byte, n)
	copy(p, hdr[:])
	_, err := io.ReadFull(r, p[4:])
	return p, err
}

func sipTarget(args []string) error {
	return serveTargets("sip-target", args, "127.0.0.1:5060", "", func(c net.Conn, _ []byte) { registrar(c) })
}

// h323Target answers every TPKT packet with the -rcf packet (a
// RegistrationConfirm tunnelled in a Facility), as a gatekeeper does.
func h323Target(args []string) error {
	return serveTargets("h323-target", args, "127.0.0.1:1720", "protocols/h323/testdata/rcf.tpkt", func(c net.Conn, rcf []byte) {
		for {
			if _, err := readTPKT(c); err != nil {
				return
			}
			if _, err := c.Write(rcf); err != nil {
				return
			}
		}
	})
}

// serveTargets runs serve for every connection on -listen until a signal;
// answer is the file named by -answer (defaultAnswer; "" for none).
func serveTargets(name string, args []string, defaultListen, defaultAnswer string, serve func(net.Conn, []byte)) error {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	listen := fs.String("listen", defaultListen, "address")
	answerFile := fs.String("answer", defaultAnswer, "the packet answered to each one received")
	fs.Parse(args)
	var answer []byte
	if *answerFile != "" {
		var err error
		if answer, err = os.ReadFile(*answerFile); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-stop; ln.Close() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	defer func() {
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		mu.Lock()
		open[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			serve(c, answer)
			mu.Lock()
			delete(open, c)
			mu.Unlock()
			c.Close()
		}()
	}
}

// registrar answers each request on c with 200 OK until c closes.
func registrar(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		var copied strings.Builder
		length := 0
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if strings.TrimSpace(line) == "" { // RFC 5626 keep-alive CRLFs
			continue
		}
		for {
			h, err := br.ReadString('\n')
			if err != nil {
				return
			}
			h = strings.TrimRight(h, "\r\n")
			if h == "" {
				break
			}
			k, v, _ := strings.Cut(h, ":")
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "via", "v", "from", "f", "to", "t", "call-id", "i", "cseq":
				copied.WriteString(h + "\r\n")
			case "content-length", "l":
				length, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if _, err := br.Discard(length); err != nil {
			return
		}
		if _, err := io.WriteString(c, "SIP/2.0 200 OK\r\n"+copied.String()+"Content-Length: 0\r\n\r\n"); err != nil {
			return
		}
	}
}
