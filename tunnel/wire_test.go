package tunnel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// frame is a hello as the agent writes it.
func frame(body string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func TestHelloRoundTrip(t *testing.T) {
	h := Hello{Version: 1, Account: "hq-lan", Token: "s3cret", Services: []Register{
		{Name: "hq.example.com", Ports: map[string]int{"http": 80, "https": 443}},
		{Name: "example.com/branch", Ports: map[string]int{"h323": 1720}},
	}}
	var b bytes.Buffer
	if err := Write(&b, h); err != nil {
		t.Fatal(err)
	}
	got, err := ReadHello(&b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, h) {
		t.Errorf("got %+v, want %+v", got, h)
	}
}

func TestHelloRefused(t *testing.T) {
	for _, tt := range []struct{ name, body string }{
		{"not JSON", `hello`},
		{"version 2", `{"version":2,"account":"a","services":[]}`},
		{"no account", `{"version":1,"services":[]}`},
		{"unknown field", `{"version":1,"account":"a","services":[],"admin":true}`},
		{"trailing value", `{"version":1,"account":"a","services":[]} {}`},
		{"pattern name", `{"version":1,"account":"a","services":[{"name":"*.example.com","ports":{"http":80}}]}`},
		{"name with a space", `{"version":1,"account":"a","services":[{"name":"a b","ports":{"http":80}}]}`},
		{"name that lowers to another", `{"version":1,"account":"a","services":[{"name":"\u212Aiosk.example.com","ports":{"http":80}}]}`}, // KELVIN SIGN
		{"name twice, in two cases", `{"version":1,"account":"a","services":[{"name":"a","ports":{"http":80}},{"name":"A","ports":{"http":80}}]}`},
		{"no ports", `{"version":1,"account":"a","services":[{"name":"a","ports":{}}]}`},
		{"unknown type", `{"version":1,"account":"a","services":[{"name":"a","ports":{"ftp":21}}]}`},
		{"port 0", `{"version":1,"account":"a","services":[{"name":"a","ports":{"http":0}}]}`},
		{"port 65536", `{"version":1,"account":"a","services":[{"name":"a","ports":{"http":65536}}]}`},
		{"address in ports", `{"version":1,"account":"a","services":[{"name":"a","ports":{"http":"10.0.0.1:80"}}]}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if h, err := ReadHello(bytes.NewReader(frame(tt.body))); !errors.Is(err, errBadHello) {
				t.Errorf("got %+v, %v; want errBadHello", h, err)
			}
		})
	}
	huge := binary.BigEndian.AppendUint32(nil, maxMessage+1)
	if _, err := ReadHello(bytes.NewReader(huge)); !errors.Is(err, errTooLarge) {
		t.Errorf("a length above the cap: %v", err)
	}
	if _, err := ReadHello(bytes.NewReader(frame(`{"version":1`)[:8])); err == nil {
		t.Error("a cut message was read")
	}
	many := `{"version":1,"account":"a","services":[` + strings.Repeat(`{"name":"x","ports":{"http":1}},`, maxServices) + `{"name":"y","ports":{"http":1}}]}`
	if _, err := ReadHello(bytes.NewReader(frame(many))); !errors.Is(err, errBadHello) {
		t.Errorf("more than %d services: %v", maxServices, err)
	}
}

func TestStreamHeader(t *testing.T) {
	s := Stream{Service: "hq.example.com", Type: "https", TLS: true, Client: netip.MustParseAddrPort("[2001:db8::1]:5060")}
	h := http.Header{}
	s.SetHeader(h)
	got, err := ParseStream(h)
	if err != nil || got != s {
		t.Fatalf("got %+v, %v", got, err)
	}
	for _, tt := range []struct {
		name string
		edit func(http.Header)
	}{
		{"no service", func(h http.Header) { h.Del(hService) }},
		{"service twice", func(h http.Header) { h.Add(hService, "other.example.com") }},
		{"address as service", func(h http.Header) { h.Set(hService, "10.0.0.1:22") }},
		{"unknown type", func(h http.Header) { h.Set(hType, "ssh") }},
		{"TLS yes", func(h http.Header) { h.Set(hTLS, "yes") }},
		{"client without port", func(h http.Header) { h.Set(hClient, "192.0.2.1") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			s.SetHeader(h)
			tt.edit(h)
			if got, err := ParseStream(h); !errors.Is(err, errBadStream) {
				t.Errorf("got %+v, %v; want errBadStream", got, err)
			}
		})
	}
}

func TestWelcome(t *testing.T) {
	var b bytes.Buffer
	w := Welcome{HeartbeatMS: 15000, Accepted: []string{"a"}, Refused: []Refused{{Name: "b", Reason: "not in the account's names"}}}
	Write(&b, w)
	got, err := ReadWelcome(&b)
	if err != nil || !reflect.DeepEqual(*got, w) {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := ReadWelcome(bytes.NewReader(frame(`{"accepted":["a"]}`))); !errors.Is(err, errBadWelcome) {
		t.Errorf("no heartbeat: %v", err)
	}
}

// FuzzHello: whatever an unauthenticated peer sends as its hello is
// refused or decoded into a registration that meets every rule.
func FuzzHello(f *testing.F) {
	f.Add([]byte(`{"version":1,"account":"hq-lan","token":"s","services":[{"name":"hq.example.com","ports":{"http":80,"https":443}}]}`)) // the agent's own
	f.Add([]byte(`{"version":1,"account":"a","services":[{"name":"example.com/branch","ports":{"h323":1720}}]}`))                        // a gatekeeper ID
	f.Add([]byte(`{"version":1,"account":"a","services":[{"name":"*.x","ports":{"http":80}}]}`))                                         // a pattern, refused
	f.Add([]byte(`{"version":1,"account":"a","services":null,"services":[]}`))                                                           // a key twice
	f.Fuzz(func(t *testing.T, body []byte) {
		h, err := DecodeHello(body)
		if err != nil {
			return
		}
		if h.Version != 1 || h.Account == "" || len(h.Services) > maxServices {
			t.Fatalf("accepted %+v", h)
		}
		for _, s := range h.Services {
			if !validName(s.Name) || len(s.Ports) == 0 {
				t.Fatalf("accepted service %+v", s)
			}
			for _, p := range s.Ports {
				if p < 1 || p > 65535 {
					t.Fatalf("accepted port %d", p)
				}
			}
		}
	})
}

// FuzzStream: a stream header is refused or names a registered-name
// shape, a known type and a client address.
func FuzzStream(f *testing.F) {
	f.Add("hq.example.com", "https", "true", "192.0.2.1:443") // the edge's own
	f.Add("example.com/branch", "h323s", "false", "[::1]:1720")
	f.Add("a", "http", "TRUE", "1.2.3.4")
	f.Fuzz(func(t *testing.T, service, typ, tls, client string) {
		h := http.Header{hService: {service}, hType: {typ}, hTLS: {tls}, hClient: {client}}
		s, err := ParseStream(h)
		if err != nil {
			return
		}
		if !validName(s.Service) || !s.Client.IsValid() || (tls != "true" && tls != "false") {
			t.Fatalf("accepted %+v", s)
		}
	})
}

// FuzzStreamBlock: a stream block from another node is refused or decodes
// into a header that ParseStream accepted, and written again reads back alike.
func FuzzStreamBlock(f *testing.F) {
	var b bytes.Buffer
	WriteStream(&b, Stream{Service: "hq.example.com", Type: "https", TLS: true, Client: netip.MustParseAddrPort("192.0.2.1:443")})
	f.Add(b.Bytes()[4:])                                                                                                            // the node's own
	f.Add([]byte("Gatehouse-Service: a\r\nGatehouse-Type: http\r\nGatehouse-Tls: false\r\nGatehouse-Client: [::1]:5\r\nX: y\r\n"))  // an unknown field
	f.Add([]byte("Gatehouse-Service: a\r\nGatehouse-Type: http\r\nGatehouse-Tls: false\r\nGatehouse-Client: [::1]:5\r\n\r\nGET /")) // bytes after the fields
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := DecodeStream(body)
		if err != nil {
			return
		}
		if !validName(s.Service) || !s.Client.IsValid() {
			t.Fatalf("accepted %+v", s)
		}
		var b bytes.Buffer
		if err := WriteStream(&b, s); err != nil {
			t.Fatal(err)
		}
		again, err := ReadStream(&b)
		if err != nil || again != s {
			t.Fatalf("%+v read back as %+v, %v", s, again, err)
		}
	})
}

func TestStreamBlock(t *testing.T) {
	want := Stream{Service: "example.com/branch", Type: "ldap", Client: netip.MustParseAddrPort("[2001:db8::1]:389")}
	var b bytes.Buffer
	if err := WriteStream(&b, want); err != nil {
		t.Fatal(err)
	}
	b.WriteString("first packet") // what follows the block is the connection's
	got, err := ReadStream(&b)
	if err != nil || got != want || b.String() != "first packet" {
		t.Fatalf("read %+v, %v; left %q", got, err, b.String())
	}
	for _, bad := range []string{
		"Gatehouse-Service: a\r\nGatehouse-Type: http\r\nGatehouse-Tls: false\r\n",                                                        // no client
		"Gatehouse-Service: a\r\nGatehouse-Service: b\r\nGatehouse-Type: http\r\nGatehouse-Tls: false\r\nGatehouse-Client: 1.2.3.4:5\r\n", // twice
		"Gatehouse-Service: a\r\nGatehouse-Type: http\r\nGatehouse-Tls: false\r\nGatehouse-Client: 1.2.3.4:5\r\nHost: x\r\n",              // unknown field
		"Gatehouse-Service: a\r\nGatehouse-Type: http\r\nGatehouse-Tls: false\r\nGatehouse-Client: 1.2.3.4:5\r\n\r\nmore",                 // trailing
		"Gatehouse-Service a\r\n", // not a header line
	} {
		if s, err := DecodeStream([]byte(bad)); err == nil {
			t.Errorf("%q accepted as %+v", bad, s)
		}
	}
	var big bytes.Buffer
	big.Write([]byte{0, 0, 0x10, 0})
	if _, err := ReadStream(&big); err == nil {
		t.Error("a 4 KiB block accepted")
	}
}
