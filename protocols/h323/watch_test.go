package h323

import (
	"errors"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

func TestWatcherFrame(t *testing.T) {
	w := &watcher{}
	for _, dir := range []proxy.Direction{proxy.FromClient, proxy.FromTarget} {
		for _, tc := range []struct {
			buf     []byte
			want    int
			wantErr error
		}{
			{nil, 0, proxy.ErrNeedMore},
			{[]byte{3, 0, 0}, 0, proxy.ErrNeedMore},
			{[]byte{3, 0, 0, 4}, 4, nil},                    // a keep-alive
			{[]byte{3, 0, 0xFF, 0xFF}, 65535, nil},          // the largest; the relay streams what is past the head
			{[]byte{3, 0, 0x01, 0x00, 8, 2}, 256, nil},      // the length, with only part of the packet here
			{[]byte{0x16}, 0, errTPKT},                      // a TLS ClientHello on the plain port: refused at once
			{[]byte{'G', 'E', 'T', ' '}, 0, errTPKT},        // HTTP
			{[]byte{3, 0, 0, 2}, 0, errTPKT},                // shorter than its header
			{[]byte{3, 0x80, 0, 8, 0, 0, 0, 0}, 0, errTPKT}, // reserved octet set
		} {
			n, err := w.Frame(dir, tc.buf)
			if n != tc.want || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Errorf("Frame(%v, % x) = %d, %v; want %d, %v", dir, tc.buf, n, err, tc.want, tc.wantErr)
			}
		}
	}
}

func TestWatcherClient(t *testing.T) {
	registered := &watcher{reg: registration{service: "example.com", user: "alice"}}
	call := &watcher{reg: registration{service: "example.com"}}
	rrqAlice := rrq("hq@Example.COM", false, h323ID("ALICE"), dialled("201"))
	cut := facility(facilityOptions{}, rrqAlice)
	cut = cut[:len(cut)-10]
	setupCut := load(t, "setup_h323_id")
	setupCut = setupCut[:20]
	for _, tc := range []struct {
		name string
		w    *watcher
		head []byte
		want error // nil: forwarded
	}{
		{"keep-alive", registered, []byte{3, 0, 0, 4}, nil},
		{"the first message again", registered, load(t, "grq_example_com"), nil},
		{"re-registration, other case and location", registered, facility(facilityOptions{}, rrqAlice), nil},
		{"lightweight RRQ", registered, facility(facilityOptions{}, rrq("", false)), nil},
		{"RCF tunnelled by the client", registered, load(t, "rcf"), nil},
		{"a call", registered, load(t, "setup_email_id"), nil},
		{"a Setup cut at first_packet_max", registered, setupCut, nil},
		{"a Facility without RAS", registered, facility(facilityOptions{}), nil},
		{"RRQ for another alias", registered, facility(facilityOptions{}, rrq("example.com", false, h323ID("bob"))), errOtherAlias},
		{"RRQ for a number only", registered, facility(facilityOptions{}, rrq("example.com", false, dialled("202"))), errOtherAlias},
		{"RRQ for another service", registered, facility(facilityOptions{}, rrq("other.example", false, h323ID("alice"))), errOtherService},
		{"GRQ for a branch", registered, facility(facilityOptions{}, grq("example.com/branch")), errOtherService},
		{"second of two RAS messages", registered, facility(facilityOptions{}, rcf("example.com"), rrq("example.com", false, h323ID("bob"))), errOtherAlias},
		{"any alias after a call", call, facility(facilityOptions{}, rrq("example.com", false, h323ID("bob"))), nil},
		{"another service after a call", call, facility(facilityOptions{}, grq("other.example", h323ID("bob"))), errOtherService},
		{"a Facility cut at first_packet_max", registered, cut, errUncheckable},
		{"not Q.931", registered, tpkt([]byte{1, 2, 3, 4, 5, 6}), errQ931},
		{"a Facility of bad PER", registered, tpkt(q931(q931Facility, 0, []byte{0xFF, 0xFF})), errH225},
		{"a Facility of a bad RAS message", registered, facility(facilityOptions{}, rrqAlice[:30]), errRAS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.w.Client(tc.head)
			if tc.want == nil {
				if v.Refusal != nil || v.Close || v.Reply != nil {
					t.Errorf("Client = %+v, want it forwarded", v)
				}
				return
			}
			if !errors.Is(v.Refusal, tc.want) || !v.Close || v.Reply != nil {
				t.Errorf("Client = %+v, want closed for %q", v, tc.want)
			}
		})
	}
}

func TestWatcherTarget(t *testing.T) {
	w := &watcher{reg: registration{service: "example.com", user: "alice"}}
	cut := load(t, "rrj_security_denial")
	for _, tc := range []struct {
		name string
		head []byte
		want string
	}{
		{"keep-alive", []byte{3, 0, 0, 4}, ""},
		{"GRJ undefinedReason", facility(facilityOptions{}, grj("example.com", 3)), "registration rejected by target (GRJ undefinedReason)"},
		{"GRJ resourceUnavailable", facility(facilityOptions{}, grj("example.com", 0)), ""},
		{"RRJ discoveryRequired", facility(facilityOptions{}, rrj("example.com", 0, false)), ""},
		{"RRJ invalidAlias", facility(facilityOptions{}, rrj("example.com", 2, true)), "registration rejected by target (RRJ invalidAlias)"},
		{"RRJ registerWithAssignedGK", facility(facilityOptions{}, rrj("example.com", 10, true)), ""},
		{"RRJ securityError", facility(facilityOptions{}, rrj("example.com", 9, true)), "registration rejected by target (RRJ securityError)"},
		{"a reject cut at first_packet_max", cut[:len(cut)-4], ""},
		{"target garbage", []byte{3, 0, 0, 9, 1, 2, 3, 4, 5}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, _ := w.Target(tc.head); got.Text() != tc.want {
				t.Errorf("Target = %q, want %q", got.Text(), tc.want)
			}
		})
	}
}
