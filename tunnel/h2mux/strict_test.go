package h2mux

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawClient is a hand-driven HTTP/2 client against a server mux: the
// frames a misbehaving peer sends.
type rawClient struct {
	fr  *http2.Framer
	srv *Conn
	mu  sync.Mutex
	bad []error // what Misbehaved heard
}

func newRawClient(t *testing.T, cfg Config) *rawClient {
	cc, sc := tcpPair(t)
	r := &rawClient{fr: http2.NewFramer(cc, cc)}
	cfg.Misbehaved = func(err error) {
		r.mu.Lock()
		r.bad = append(r.bad, err)
		r.mu.Unlock()
	}
	if cfg.Handler == nil {
		cfg.Handler = func(s *Stream) { s.Respond(200, nil, false) }
	}
	ready := make(chan error, 1)
	go func() {
		var err error
		r.srv, err = Server(sc, cfg)
		ready <- err
	}()
	io.WriteString(cc, http2.ClientPreface)
	// Drain what the server writes, so that it never blocks on us.
	var drain sync.WaitGroup
	drain.Go(func() { io.Copy(io.Discard, cc) })
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); r.srv.Close(); r.srv.Wait(); drain.Wait() })
	return r
}

func (r *rawClient) headers(t *testing.T, id uint32) {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: "agent"}, {Name: ":path", Value: "/gatehouse/stream"}} {
		enc.WriteField(f)
	}
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: buf.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
}

// ended waits for the server to end the connection and returns its error.
func (r *rawClient) ended(t *testing.T) *ProtocolError {
	t.Helper()
	select {
	case <-r.srv.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the server kept a connection that broke the protocol")
	}
	var pe *ProtocolError
	if !errors.As(r.srv.Err(), &pe) {
		t.Fatalf("ended with %v, want a protocol error", r.srv.Err())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bad) == 0 {
		t.Error("Misbehaved heard nothing")
	}
	return pe
}

// TestStrictConnectionErrors: each breach ends the connection with the
// error code RFC 9113 names, and is reported.
func TestStrictConnectionErrors(t *testing.T) {
	cases := []struct {
		name string
		code http2.ErrCode
		send func(t *testing.T, r *rawClient)
	}{
		{"first frame not SETTINGS", http2.ErrCodeProtocol, func(t *testing.T, r *rawClient) {
			r.fr.WritePing(false, [8]byte{})
		}},
		{"DATA on an idle stream", http2.ErrCodeProtocol, func(t *testing.T, r *rawClient) {
			r.fr.WriteSettings()
			r.fr.WriteData(7, false, []byte("x"))
		}},
		{"connection window overflow", http2.ErrCodeFlowControl, func(t *testing.T, r *rawClient) {
			r.fr.WriteSettings()
			r.fr.WriteWindowUpdate(0, maxWindow)
		}},
		{"DATA beyond the connection window", http2.ErrCodeFlowControl, func(t *testing.T, r *rawClient) {
			r.fr.WriteSettings()
			for id := uint32(1); id <= 9; id += 2 {
				r.headers(t, id)
			}
			chunk := make([]byte, 16<<10)
			for range 5 * 64 / 16 { // 5 × 64 KiB over a connection window of 128 KiB
				for id := uint32(1); id <= 9; id += 2 {
					r.fr.WriteData(id, false, chunk)
				}
			}
		}},
		{"oversized frame", http2.ErrCodeFrameSize, func(t *testing.T, r *rawClient) {
			r.fr.WriteSettings()
			r.headers(t, 1)
			r.fr.WriteData(1, false, make([]byte, DefaultMaxFrame+1))
		}},
		{"PING flood", http2.ErrCodeEnhanceYourCalm, func(t *testing.T, r *rawClient) {
			r.fr.WriteSettings()
			for range controlBudget + 10 {
				r.fr.WritePing(false, [8]byte{1})
			}
		}},
		{"SETTINGS flood", http2.ErrCodeEnhanceYourCalm, func(t *testing.T, r *rawClient) {
			for range controlBudget + 10 {
				r.fr.WriteSettings()
			}
		}},
		{"rapid reset", http2.ErrCodeEnhanceYourCalm, func(t *testing.T, r *rawClient) {
			r.fr.WriteSettings()
			for id := uint32(1); id < 2*(controlBudget+10); id += 2 {
				r.headers(t, id)
				r.fr.WriteRSTStream(id, http2.ErrCodeCancel)
			}
		}},
		{"stream IDs going down", http2.ErrCodeProtocol, func(t *testing.T, r *rawClient) {
			r.fr.WriteSettings()
			r.headers(t, 5)
			r.fr.WriteData(5, true, nil)
			time.Sleep(50 * time.Millisecond)
			r.headers(t, 3)
		}},
		{"bad SETTINGS value", http2.ErrCodeProtocol, func(t *testing.T, r *rawClient) {
			r.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 100})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRawClient(t, Config{StreamWindow: 64 << 10, ConnWindow: 128 << 10})
			tc.send(t, r)
			if pe := r.ended(t); pe.Code != tc.code {
				t.Fatalf("ended with %v, want code %v", pe, tc.code)
			}
		})
	}
}

// TestStrictStreamErrors: a breach that concerns one stream resets it and
// is reported; the connection and its other streams go on.
func TestStrictStreamErrors(t *testing.T) {
	got := make(chan *Stream, 4)
	r := newRawClient(t, Config{StreamWindow: 64 << 10, MaxStreams: 2, Handler: func(s *Stream) {
		s.Respond(200, nil, false)
		got <- s
	}})
	r.fr.WriteSettings()
	r.headers(t, 1)
	r.headers(t, 3)
	s1, s3 := <-got, <-got
	if s1.ID() > s3.ID() {
		s1, s3 = s3, s1
	}
	// Too many streams: the third is refused.
	r.headers(t, 5)
	// DATA beyond the stream's window resets stream 1 only.
	chunk := make([]byte, 16<<10)
	for range 5 {
		r.fr.WriteData(1, false, chunk)
	}
	r.fr.WriteData(3, false, []byte("still here"))
	// Stream 3's DATA came after stream 1's on the wire: once it is here,
	// the reader has taken all of stream 1's, and nothing read stream 1
	// meanwhile (a read would have given the window back).
	buf := make([]byte, len("still here"))
	s3.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(s3, buf); err != nil || string(buf) != "still here" {
		t.Fatalf("stream 3: %q, %v", buf, err)
	}
	s1.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(s1, make([]byte, 5*len(chunk))); err == nil {
		t.Error("stream 1 delivered DATA beyond its window")
	}
	select {
	case <-r.srv.Done():
		t.Fatalf("the connection ended: %v", r.srv.Err())
	default:
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var refused, flow bool
	for _, e := range r.bad {
		var pe *ProtocolError
		if errors.As(e, &pe) {
			refused = refused || pe.Code == http2.ErrCodeRefusedStream && pe.Stream == 5
			flow = flow || pe.Code == http2.ErrCodeFlowControl && pe.Stream == 1
		}
	}
	if !refused || !flow {
		t.Fatalf("reported %v; want stream 5 refused and stream 1's flow-control error", r.bad)
	}
}

// TestStrictClientRole: the client role takes no stream the server opens.
func TestStrictClientRole(t *testing.T) {
	cc, sc := tcpPair(t)
	var drain sync.WaitGroup
	drain.Go(func() { io.Copy(io.Discard, sc) })
	defer func() { sc.Close(); drain.Wait() }()
	var heard []error
	var mu sync.Mutex
	cl, err := Client(cc, Config{Misbehaved: func(err error) { mu.Lock(); heard = append(heard, err); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cl.Close(); cl.Wait() }()
	fr := http2.NewFramer(sc, nil)
	fr.WriteSettings()
	var buf bytes.Buffer
	hpack.NewEncoder(&buf).WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2, BlockFragment: buf.Bytes(), EndHeaders: true})
	select {
	case <-cl.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the client kept a connection whose server opened a stream")
	}
	var pe *ProtocolError
	if !errors.As(cl.Err(), &pe) || pe.Code != http2.ErrCodeProtocol {
		t.Fatalf("ended with %v", cl.Err())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(heard) == 0 {
		t.Fatal("not reported")
	}
}

// fuzzConn feeds a server mux the bytes of a fuzz input and drops what it
// writes.
type fuzzConn struct{ r io.Reader }

func (c *fuzzConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c *fuzzConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *fuzzConn) Close() error                     { return nil }
func (c *fuzzConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *fuzzConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// seedFrames is a well-formed client's opening: SETTINGS, a stream with
// DATA, a window update, a ping, a reset.
func seedFrames() []byte {
	var b bytes.Buffer
	fr := http2.NewFramer(&b, nil)
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	fr.WriteWindowUpdate(0, 1<<20)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: "agent"}, {Name: ":path", Value: "/gatehouse/stream"},
		{Name: "gatehouse-service", Value: "pbx.example.com"}} {
		enc.WriteField(f)
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	fr.WriteData(1, false, []byte("REGISTER sip:example.com SIP/2.0\r\n\r\n"))
	fr.WriteWindowUpdate(1, 100)
	fr.WritePing(false, [8]byte{1, 2, 3})
	fr.WriteData(1, true, nil)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: hb.Bytes(), EndHeaders: true})
	fr.WriteRSTStream(3, http2.ErrCodeCancel)
	fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	return b.Bytes()
}

// FuzzFrames: whatever a client sends after its preface, the server role
// neither panics nor hangs, and ends when the bytes end.
func FuzzFrames(f *testing.F) {
	f.Add(seedFrames())
	f.Fuzz(func(t *testing.T, data []byte) {
		in := io.MultiReader(bytes.NewReader([]byte(http2.ClientPreface)), bytes.NewReader(data))
		c, err := Server(&fuzzConn{r: in}, Config{StreamWindow: 64 << 10, ConnWindow: 128 << 10, MaxStreams: 8,
			Handler: echo, Misbehaved: func(error) {}})
		if err != nil {
			return
		}
		<-c.Done()
		c.Wait()
	})
}
