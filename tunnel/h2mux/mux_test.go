package h2mux

//lint:file-ignore SA1019 the interop tests run x/net/http2's own Server (ServeConn) and Transport on one conn: the stock peers each role must talk to

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// tcpPair is two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (client, server net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			acc <- nil
			return
		}
		acc <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-acc
	if server == nil {
		t.Fatal("accept failed")
	}
	return client, server
}

// startServer starts the server role on sc on a goroutine (its preface
// waits for the client's); the returned func waits for it.
func startServer(t testing.TB, sc net.Conn, cfg Config) func() *Conn {
	type res struct {
		c   *Conn
		err error
	}
	srv := make(chan res, 1)
	go func() {
		c, err := Server(sc, cfg)
		srv <- res{c, err}
	}()
	return func() *Conn {
		t.Helper()
		r := <-srv
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.c
	}
}

// pair runs a client and a server mux on one loopback connection.
func pair(t testing.TB, ccfg, scfg Config) (*Conn, *Conn) {
	cc, sc := tcpPair(t)
	server := startServer(t, sc, scfg)
	cl, err := Client(cc, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := server()
	t.Cleanup(func() {
		cl.Close()
		srv.Close()
		cl.Wait()
		srv.Wait()
	})
	return cl, srv
}

// echo answers 200 and sends back what it reads, until the client's end.
func echo(s *Stream) {
	defer s.Close()
	if s.Respond(200, nil, false) != nil {
		return
	}
	io.Copy(s, s)
}

func open(t testing.TB, c *Conn) *Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.Open(ctx, "agent", "/gatehouse/stream", []hpack.HeaderField{{Name: "gatehouse-service", Value: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// echoFlows checks that a new /echo stream of cl answers within 5 s.
func echoFlows(t testing.TB, cl *Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := cl.Open(ctx, "agent", "/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(s, "still flowing")
	buf := make([]byte, len("still flowing"))
	if _, err := io.ReadFull(s, buf); err != nil {
		t.Fatalf("another stream: %v", err)
	}
}

func waitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 5 s for %s", what)
		}
	}
}

// TestEcho: exchanges on one stream, the request's fields reach the
// handler, half-close ends the stream on both sides.
func TestEcho(t *testing.T) {
	var got []hpack.HeaderField
	var mu sync.Mutex
	cl, srv := pair(t, Config{}, Config{Handler: func(s *Stream) {
		mu.Lock()
		got = s.Fields()
		mu.Unlock()
		echo(s)
	}})
	s := open(t, cl)
	if s.Status() != 200 {
		t.Fatalf("status %d", s.Status())
	}
	buf := make([]byte, 64)
	for i := range 20 {
		msg := fmt.Sprintf("exchange %d", i)
		if _, err := io.WriteString(s, msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, buf[:len(msg)]); err != nil || string(buf[:len(msg)]) != msg {
			t.Fatalf("%q, %v", buf[:len(msg)], err)
		}
		if !s.Alive() {
			t.Fatal("not alive between exchanges")
		}
	}
	mu.Lock()
	if len(got) != 1 || got[0].Name != "gatehouse-service" || got[0].Value != "x" {
		t.Errorf("handler got fields %v", got)
	}
	mu.Unlock()
	s.CloseWrite()
	if n, err := s.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("after half-close: %d, %v; want EOF", n, err)
	}
	waitFor(t, "both sides to forget the stream", func() bool { return cl.NumStreams() == 0 && srv.NumStreams() == 0 })
	s.Close()
}

// TestDeadlines: a read past its deadline times out as on a socket, and
// the stream still works after the deadline is cleared.
func TestDeadlines(t *testing.T) {
	cl, _ := pair(t, Config{}, Config{Handler: echo})
	s := open(t, cl)
	defer s.Close()
	s.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	var ne net.Error
	if _, err := s.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past its deadline: %v", err)
	}
	s.SetReadDeadline(time.Time{})
	io.WriteString(s, "x")
	if _, err := io.ReadFull(s, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	// A deadline already past fails a Write at once.
	s.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := io.WriteString(s, "y"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past a deadline set in the past: %v", err)
	}
	s.SetWriteDeadline(time.Time{})
	// A deadline moved later while a Read waits: the earlier one's timer
	// does not end the Read, which gets what comes after it.
	s.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	s.SetReadDeadline(time.Now().Add(time.Minute))
	go func() {
		time.Sleep(100 * time.Millisecond)
		io.WriteString(s, "z")
	}()
	b := make([]byte, 1)
	if _, err := io.ReadFull(s, b); err != nil || b[0] != 'z' {
		t.Fatalf("read with its deadline moved later: %q, %v", b, err)
	}
}

// TestBulkBothWays: streams that send and receive megabytes at once, in
// windows far smaller than what moves, neither lose bytes nor deadlock.
func TestBulkBothWays(t *testing.T) {
	small := Config{StreamWindow: 64 << 10, ConnWindow: 128 << 10, MaxFrame: 16 << 10}
	scfg := small
	scfg.Handler = echo
	cl, _ := pair(t, small, scfg)
	const size = 8 << 20
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range 4 {
		wg.Go(func() {
			s := open(t, cl)
			defer s.Close()
			data := bytes.Repeat([]byte{byte(i), 1, 2, 3, 4, 5, 6, 7}, size/8)
			go func() {
				s.Write(data)
				s.CloseWrite()
			}()
			back, err := io.ReadAll(s)
			if err != nil {
				errs <- err
				return
			}
			if sha256.Sum256(back) != sha256.Sum256(data) {
				errs <- fmt.Errorf("stream %d: %d bytes back, not what was sent", i, len(back))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestStoppedReader: a peer that stops reading holds back its sender at
// the stream's window (and the tunnel's), the receiver holds no more than
// the windows, and the other streams of the connection still flow.
func TestStoppedReader(t *testing.T) {
	const win, connWin = 64 << 10, 256 << 10
	stuck := make(chan struct{})
	var held []*Stream
	var mu sync.Mutex
	scfg := Config{StreamWindow: win, ConnWindow: connWin, Handler: func(s *Stream) {
		if s.Path() == "/echo" {
			echo(s)
			return
		}
		mu.Lock()
		held = append(held, s)
		mu.Unlock()
		s.Respond(200, nil, false)
		<-stuck // reads nothing
		s.Close()
	}}
	cl, _ := pair(t, Config{}, scfg)
	t.Cleanup(func() { close(stuck) }) // before pair's cleanup waits for the handlers
	var sent int64
	for i := range 3 {
		s := open(t, cl)
		defer s.Close()
		s.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := s.Write(make([]byte, 4*win))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("stream %d: write to a peer that reads nothing: %d, %v; want a timeout", i, n, err)
		}
		if n > win {
			t.Fatalf("stream %d: %d bytes sent past a window of %d", i, n, win)
		}
		sent += int64(n)
	}
	mu.Lock()
	var unread int
	for _, s := range held {
		s.mu.Lock()
		unread += s.unread
		s.mu.Unlock()
	}
	mu.Unlock()
	if unread > connWin || int64(unread) != sent {
		t.Fatalf("the receiver holds %d bytes (sent %d, connection window %d)", unread, sent, connWin)
	}
	echoFlows(t, cl)
}

// TestInteropStockServer: x/net's http2.Server serves the client role: the
// wire is HTTP/2.
func TestInteropStockServer(t *testing.T) {
	cc, sc := tcpPair(t)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/gatehouse/stream" || r.Header.Get("Gatehouse-Service") != "x" {
			w.WriteHeader(400)
			return
		}
		w.WriteHeader(200)
		rc := http.NewResponseController(w)
		rc.Flush()
		buf := make([]byte, 1024)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				w.Write(buf[:n])
				rc.Flush()
			}
			if err != nil {
				return
			}
		}
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		(&http2.Server{}).ServeConn(sc, &http2.ServeConnOpts{Handler: h})
	}()
	cl, err := Client(cc, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cl.Close(); cl.Wait(); sc.Close(); <-done }()
	s := open(t, cl)
	if s.Status() != 200 {
		t.Fatalf("status %d", s.Status())
	}
	io.WriteString(s, "hello, stock server")
	buf := make([]byte, len("hello, stock server"))
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "hello, stock server" {
		t.Fatalf("%q, %v", buf, err)
	}
	s.CloseWrite()
	if _, err := s.Read(buf); err != io.EOF {
		t.Fatalf("after half-close: %v, want EOF", err)
	}
}

// TestInteropStockClient: x/net's http2.Transport talks to the server role.
func TestInteropStockClient(t *testing.T) {
	cc, sc := tcpPair(t)
	server := startServer(t, sc, Config{Handler: echo})
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(context.Context, string, string, *tls.Config) (net.Conn, error) {
		return cc, nil
	}}
	defer tr.CloseIdleConnections()
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://agent/gatehouse/stream", pr)
	respc := make(chan *http.Response, 1)
	errc := make(chan error, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		if err != nil {
			errc <- err
			return
		}
		respc <- resp
	}()
	srv := server()
	defer func() { srv.Close(); srv.Wait() }()
	io.WriteString(pw, "hello, stock client") // the request's headers leave with the first bytes
	var resp *http.Response
	select {
	case resp = <-respc:
	case err := <-errc:
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, len("hello, stock client"))
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "hello, stock client" {
		t.Fatalf("%q, %v", buf, err)
	}
	pw.Close()
	if _, err := resp.Body.Read(buf); err != io.EOF {
		t.Fatalf("after the request's end: %v, want EOF", err)
	}
}

// TestIdleStreams: an idle stream holds no goroutine and little memory in
// the mux, on either side.
func TestIdleStreams(t *testing.T) {
	const n = 2000
	cl, srv := pair(t, Config{}, Config{Handler: func(s *Stream) { s.Respond(200, nil, false) }})
	open(t, cl).Close()
	waitFor(t, "the first stream to end", func() bool { return srv.NumStreams() == 0 })
	before := heap()
	g0 := runtime.NumGoroutine()
	streams := make([]*Stream, 0, n)
	for range n {
		s := open(t, cl)
		io.WriteString(s, "a few bytes, read")
		streams = append(streams, s)
	}
	waitFor(t, "every handler to return", func() bool { return runtime.NumGoroutine() <= g0+2 })
	// The server's streams read what came, and hold no buffer after.
	srv.mu.Lock()
	var held []*Stream
	for _, s := range srv.streams {
		held = append(held, s)
	}
	srv.mu.Unlock()
	b := make([]byte, 64)
	for _, s := range held {
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		s.Read(b)
	}
	per := float64(heap()-before) / n
	t.Logf("%.0f bytes per idle stream, both sides", per)
	if g := runtime.NumGoroutine(); g > g0+2 {
		t.Errorf("%d goroutines for %d idle streams", g-g0, n)
	}
	if per > 4096 {
		t.Errorf("%.0f bytes per idle stream, want at most 4096", per)
	}
	for _, s := range streams {
		s.Close()
	}
}

func heap() int64 {
	runtime.GC()
	runtime.GC() // and the pools' victims
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// TestStalledReadersAreReset: readers that stop and spend the whole
// connection window between them are reset after StallTimeout (ErrStalled
// there, a reset for their writers), and the connection's other streams
// flow again; a reader that keeps taking bytes, however slowly, is not.
func TestStalledReadersAreReset(t *testing.T) {
	const win, connWin = 64 << 10, 256 << 10
	stuck := make(chan struct{})
	type held struct {
		s    *Stream
		slow bool
		err  chan error
	}
	heldc := make(chan held, 8)
	scfg := Config{StreamWindow: win, ConnWindow: connWin, StallTimeout: 200 * time.Millisecond, Handler: func(s *Stream) {
		if s.Path() == "/echo" {
			echo(s)
			return
		}
		h := held{s: s, slow: s.Path() == "/slow", err: make(chan error, 1)}
		s.Respond(200, nil, false)
		heldc <- h
		if h.slow { // one byte every 20 ms
			var b [1]byte
			for {
				select {
				case <-stuck:
					s.Close()
					return
				case <-time.After(20 * time.Millisecond):
				}
				if _, err := s.Read(b[:]); err != nil {
					h.err <- err
					return
				}
			}
		}
		<-stuck // reads nothing until the end
		_, err := s.Read(make([]byte, 1))
		h.err <- err
		s.Close()
	}}
	cl, _ := pair(t, Config{}, scfg)
	t.Cleanup(func() { close(stuck) })
	writers := make([]*Stream, 0, 4)
	for i := range 4 {
		path := "/stuck"
		if i == 0 {
			path = "/slow"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := cl.Open(ctx, "agent", path, nil)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		writers = append(writers, s)
		s.SetWriteDeadline(time.Now().Add(2 * time.Second))
		go s.Write(make([]byte, 4*win)) // as much as the windows let through
	}
	hs := make([]held, 0, 4)
	for range 4 {
		hs = append(hs, <-heldc)
	}
	echoFlows(t, cl) // once the stopped readers are reset
	waitFor(t, "the stopped readers' reset", func() bool {
		for _, h := range hs {
			if h.slow {
				continue
			}
			h.s.mu.Lock()
			err := h.s.rErr
			h.s.mu.Unlock()
			if err != ErrStalled {
				return false
			}
		}
		return true
	})
	for _, h := range hs {
		select {
		case err := <-h.err:
			if h.slow {
				t.Errorf("the slow reader was cut: %v", err)
			}
		default:
		}
	}
	// The writers of the reset streams are told.
	waitFor(t, "the writers' reset", func() bool {
		n := 0
		for _, w := range writers[1:] {
			w.mu.Lock()
			if errors.Is(w.wErr, ErrStreamReset) {
				n++
			}
			w.mu.Unlock()
		}
		return n == 3
	})
}
