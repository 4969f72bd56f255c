package h323

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// fuzzCert names a user and a number, as a phone's certificate does.
var fuzzCert = &x509.Certificate{Subject: pkix.Name{CommonName: "alice"}, EmailAddresses: []string{"201@example.com"}}

// addVectors seeds a fuzz target with every packet in testdata: each is a
// real message of one of the shapes gatehouse routes on or reports.
func addVectors(f *testing.F, body bool) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.tpkt"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no vectors: %v", err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		if body { // the H323-UserInformation alone
			q, err := parseQ931(b[tpktHeaderLen:])
			if err != nil {
				f.Fatal(err)
			}
			b = q.userUser
		}
		f.Add(b)
	}
}

// allocated returns the bytes the heap grew by while fn ran a second
// time. Like testing.AllocsPerRun it runs on one P, so that the fuzzing
// engine's own goroutines do not allocate in between.
func allocated(fn func()) uint64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	fn()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// allocBound is what decoding may allocate for an input of n octets: the
// strings it returns (UTF-16 grows by at most half into UTF-8), the few
// aliases and RAS messages it keeps, never anything sized by a length the
// input claims.
func allocBound(n int) uint64 { return uint64(2*n + 4096) }

func FuzzFrameQ931(f *testing.F) {
	addVectors(f, false)
	f.Add([]byte{3, 0, 0, 4})                            // a keep-alive
	f.Add([]byte{3, 0, 0xFF, 0xFF, 8, 2, 0, 0, 0x62})    // a length past the end
	f.Add(tpkt(q931Raw(q931Setup, 0x7E, 0, 0)))          // a zero-length User-user IE
	f.Add(tpkt(q931Raw(q931Setup, 0x7E, 0xFF, 0xFF, 5))) // a User-user IE past the end
	f.Add(tpkt(q931Raw(q931Setup, 0xA1, 0x28, 0)))       // a single-octet IE, an empty IE
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := Frame(b)
		if err != nil {
			return
		}
		if n < tpktHeaderLen {
			t.Fatalf("Frame = %d", n)
		}
		if n > len(b) {
			return
		}
		q, err := parseQ931(b[tpktHeaderLen:n])
		if err == nil && (len(q.userUser) == 0 || len(q.userUser) > n-tpktHeaderLen) {
			t.Fatalf("User-user of %d octets in a packet of %d", len(q.userUser), n)
		}
	})
}

func FuzzH225(f *testing.F) {
	addVectors(f, true)
	f.Add([]byte{0x00, 0x80, 0x01, 0x2C})                                     // the long bitmap form, 300 extensions
	f.Add([]byte{0x01, 0x40, 0x80, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}) // all 64 extensions claimed
	f.Add([]byte{0x03, 0xFF, 0xFF})                                           // lengths of the largest non-fragmented size
	f.Add(grq("example.com", h323ID("alice")))                                // a bare RAS message
	f.Add(rrq("example.com", true, h323ID("alice"), url("h323:a@b")))         // one with a gateway and a url-ID
	f.Add(rrj("example.com", 4, false))                                       // a reject with a value in its reason
	f.Fuzz(func(t *testing.T, b []byte) {
		n := allocated(func() {
			for _, msgType := range []byte{q931Setup, q931Facility} {
				uu, err := decodeUserInfo(b, msgType)
				if err != nil {
					continue
				}
				if len(uu.dest) > maxAliases || len(uu.ras) > maxRAS {
					t.Fatalf("kept %d aliases and %d RAS messages", len(uu.dest), len(uu.ras))
				}
				for _, a := range uu.dest {
					_ = calledDomain(a)
				}
				for _, raw := range uu.ras {
					decodeRAS(raw)
				}
			}
			if m, err := decodeRAS(b); err == nil {
				_, _ = serviceName(bmpString(m.gatekeeperID))
				_, _ = oneUser(m.aliases)
				_ = certifiesAll(fuzzCert, &m, "example.com")
			}
		})
		if n > allocBound(len(b)) {
			t.Fatalf("decoding %d octets allocated %d bytes", len(b), n)
		}
	})
}

func FuzzSniff(f *testing.F) {
	addVectors(f, false)
	f.Add(append([]byte{3, 0, 0, 4}, load(f, "rrq_branch")...)) // a keep-alive first
	f.Fuzz(func(t *testing.T, b []byte) {
		var d *proxy.Decision
		var err error
		n := allocated(func() { d, err = Sniffer{}.Sniff(b, &proxy.ConnInfo{VerifiedCN: "alice"}) })
		if n > allocBound(len(b)) {
			t.Fatalf("sniffing %d octets allocated %d bytes", len(b), n)
		}
		if err != nil {
			if d != nil || err.Error() == "" || strings.Contains(err.Error(), "per:") {
				t.Fatalf("Sniff = %+v, %q: a refusal must be a short reason alone", d, err)
			}
			return
		}
		if d.Service == "" || !printable(d.Service) || d.Watcher == nil {
			t.Fatalf("Sniff = %+v", d)
		}
		d.Watcher.Client(b)
		d.Watcher.Target(b)
	})
}

// BenchmarkSniffRRQ measures routing a phone's registration: a Facility
// tunnelling an RRQ, behind a foreign GenericData (rrq_branch).
func BenchmarkSniffRRQ(b *testing.B) {
	packet := load(b, "rrq_branch")
	info := &proxy.ConnInfo{VerifiedCN: "alice"}
	b.SetBytes(int64(len(packet)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := (Sniffer{}).Sniff(packet, info); err != nil {
			b.Fatal(err)
		}
	}
}
