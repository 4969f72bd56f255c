package h323

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

var update = flag.Bool("update", false, "rewrite testdata/*.tpkt from the test encoder")

// A vector is one packet in testdata, with what gatehouse must make of it.
// Every vector also goes through tshark (tshark_test.go).
type vector struct {
	name  string
	build func() []byte
	// fromTarget vectors are answers of the PBX, judged by Watcher.Target.
	fromTarget bool

	service string // what Sniff decides
	err     error  // or the reason Sniff refuses
	reason  string // what Target reports
}

var vectors = []vector{
	{
		name:    "grq_example_com",
		build:   func() []byte { return facility(facilityOptions{}, grq("example.com", h323ID("alice"))) },
		service: "example.com",
	},
	{
		// The slave-PBX form, with the physical location, and the number
		// next to the name; a gateway endpoint; and a foreign feature
		// before the tunnel, which holds a decoy GRQ nested where H.460.17
		// does not look.
		name: "rrq_branch",
		build: func() []byte {
			return facility(facilityOptions{body: "facility", otherFeature: true},
				rrq("hq@example.com/branch", true, dialled("201"), h323ID("Alice")))
		},
		service: "example.com/branch",
	},
	{
		name: "rrq_cn_second_alias",
		build: func() []byte {
			return facility(facilityOptions{noTunnelling: true},
				rrq("example.com", false, h323ID("201"), h323ID("alice"), email("alice@example.com")))
		},
		// Two names in one registration: 201 and alice are two users.
		err: errManyUsers,
	},
	{
		name: "grq_rrq",
		build: func() []byte {
			return facility(facilityOptions{}, grq("example.com", h323ID("alice")),
				rrq("example.com", false, h323ID("alice"), dialled("201")))
		},
		service: "example.com",
	},
	{
		// A lightweight RRQ may carry no alias; it keeps to the GRQ's.
		name: "grq_rrq_no_alias",
		build: func() []byte {
			return facility(facilityOptions{}, grq("example.com", h323ID("alice")), rrq("", false))
		},
		service: "example.com",
	},
	{
		name:  "rrq_no_gatekeeper_id",
		build: func() []byte { return facility(facilityOptions{}, rrq("", false, h323ID("alice"))) },
		err:   errNoGatekeeperID,
	},
	{
		name:  "grq_empty_domain",
		build: func() []byte { return facility(facilityOptions{}, grq("hq@/branch", h323ID("alice"))) },
		err:   errBadGatekeeperID,
	},
	{
		name: "grq_rrq_other_alias",
		build: func() []byte {
			return facility(facilityOptions{}, grq("example.com", h323ID("alice")), rrq("example.com", false, h323ID("bob")))
		},
		err: errOtherAlias,
	},
	{
		name: "grq_rrq_other_service",
		build: func() []byte {
			return facility(facilityOptions{}, grq("example.com", h323ID("alice")), rrq("other.example", false, h323ID("alice")))
		},
		err: errOtherService,
	},
	{
		// A Facility with a RAS message, but not a registration.
		name:  "rcf_from_client",
		build: func() []byte { return facility(facilityOptions{}, rcf("example.com", h323ID("alice"))) },
		err:   errNotRoutable,
	},
	{
		name: "setup_h323_id",
		build: func() []byte {
			return setup([]testAlias{dialled("201"), h323ID("bob@example.com")}, []testAlias{h323ID("alice")}, false)
		},
		service: "example.com",
	},
	{
		name: "setup_url_id",
		build: func() []byte {
			return setup([]testAlias{url("h323:bob@example.com:1720;transport=tcp")}, []testAlias{h323ID("alice"), dialled("201")}, true)
		},
		service: "example.com",
	},
	{
		name:    "setup_email_id",
		build:   func() []byte { return setup([]testAlias{email("bob@example.com")}, nil, false) },
		service: "example.com",
	},
	{
		name:  "setup_digits_only",
		build: func() []byte { return setup([]testAlias{dialled("0049301234")}, nil, false) },
		err:   errNoCalledDomain,
	},
	{
		name:  "setup_no_destination",
		build: func() []byte { return setup(nil, []testAlias{h323ID("alice")}, false) },
		err:   errNoCalledDomain,
	},
	{
		name:       "grj_terminal_excluded",
		build:      func() []byte { return facility(facilityOptions{}, grj("example.com", 1)) },
		fromTarget: true, reason: "registration rejected by target (GRJ terminalExcluded)",
	},
	{
		name:       "rrj_security_denial",
		build:      func() []byte { return facility(facilityOptions{}, rrj("example.com", 3, true)) },
		fromTarget: true, reason: "registration rejected by target (RRJ securityDenial)",
	},
	{
		// Several RAS messages in one Facility: the reject still counts.
		name: "rcf_rrj_duplicate_alias",
		build: func() []byte {
			return facility(facilityOptions{}, rcf("example.com", h323ID("alice")), rrj("example.com", 4, false))
		},
		fromTarget: true, reason: "registration rejected by target (RRJ duplicateAlias)",
	},
	{
		name:       "rrj_full_registration_required",
		build:      func() []byte { return facility(facilityOptions{}, rrj("example.com", 4, true)) },
		fromTarget: true,
	},
	{
		name:       "rcf",
		build:      func() []byte { return facility(facilityOptions{}, rcf("example.com", h323ID("alice"), dialled("201"))) },
		fromTarget: true,
	},
}

func load(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".tpkt"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVectorFiles keeps testdata in step with the encoder; run
// "go test -run VectorFiles -update" after changing a vector.
func TestVectorFiles(t *testing.T) {
	for _, v := range vectors {
		path := filepath.Join("testdata", v.name+".tpkt")
		b := v.build()
		if *update {
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got := load(t, v.name); !bytes.Equal(got, b) {
			t.Errorf("%s differs from what the encoder builds; run with -update", path)
		}
	}
}

func TestSniffVectors(t *testing.T) {
	for _, v := range vectors {
		if v.fromTarget {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			d, err := Sniffer{}.Sniff(load(t, v.name), &proxy.ConnInfo{})
			if v.err != nil {
				if !errors.Is(err, v.err) || err.Error() != v.err.Error() {
					t.Fatalf("Sniff error %v, want %v", err, v.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Service != v.service || d.Identity != "" { // no certificate, no identity
				t.Errorf("Sniff = service %q identity %q, want %q", d.Service, d.Identity, v.service)
			}
			if !strings.HasSuffix(d.Who, "gk "+v.service) {
				t.Errorf("Who = %q, want it to name gatekeeper %q", d.Who, v.service)
			}
			if d.Watcher == nil || d.Reply != nil || d.UpgradeTLS {
				t.Errorf("Decision %+v: want a watcher and nothing else", d)
			}
		})
	}
}

func TestTargetVectors(t *testing.T) {
	w := &watcher{reg: registration{service: "example.com", user: "alice"}}
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			b := load(t, v.name)
			if got, _ := w.Target(b); got.Text() != v.reason {
				t.Errorf("Target = %q, want %q", got.Text(), v.reason)
			}
		})
	}
}
