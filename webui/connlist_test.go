package webui

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// phones makes n live connections as a busy appliance has them: SIP
// phones of two services over TLS, and a few HTTP clients.
func phones(n int, start time.Time) []proxy.ConnStatus {
	list := make([]proxy.ConnStatus, n)
	for i := range list {
		c := proxy.ConnStatus{ID: uint64(i + 1), Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), uint16(5060+i%7)),
			Type: "sips", Service: "example.com", Target: "172.16.0.10:5061", Started: start.Add(time.Duration(i%977) * time.Second),
			BytesIn: int64(i * 31 % 1000), BytesOut: int64(i * 17 % 1000), Identity: fmt.Sprintf("sip:%d@example.com", 1000+i),
			TLSVersion: "TLS 1.3", SNI: "sip.example.com", ClientCN: fmt.Sprintf("%d", 1000+i), ClientCNVerified: true, TargetTLS: true}
		switch {
		case i%10 == 0:
			c.Type, c.Service, c.Identity, c.TLSVersion, c.SNI, c.ClientCN, c.TargetTLS = "http", "hq.example.com", "hq.example.com", "", "", "", false
		case i%3 == 0:
			c.Service = "branch.example.com"
		}
		list[i] = c
	}
	return list
}

func TestListConns(t *testing.T) {
	now := time.Now()
	list := phones(100, now.Add(-time.Hour))
	q := func(s string) ConnQuery {
		v, _ := url.ParseQuery(s)
		cq, ok := parseConnQuery(v)
		if !ok {
			t.Fatalf("query %q refused", s)
		}
		return cq
	}
	ids := func(p ConnPage) string {
		var s []string
		for _, c := range p.Connections {
			s = append(s, fmt.Sprint(c.ID))
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		query    string
		matching int
		ids      string
	}{
		{"limit=3", 100, "1,2,3"},
		{"limit=3&offset=98", 100, "99,100"},
		{"offset=200", 100, ""},
		{"sort=identity&order=desc&limit=2", 100, "100,99"},
		{"sort=bytes_in&limit=3", 100, "1,98,66"},
		{"q=hq.example.com&limit=3", 10, "1,11,21"},
		{"type=http&sort=client&order=desc&limit=2", 10, "91,81"},
		{"service=BRANCH.example.com&limit=2", 30, "4,7"},
		{"q=sip:1042@ TLS", 1, "43"},
		{"q=1042 nobody", 0, ""},
	} {
		p := listConns(list, q(tc.query), now)
		if p.Matching != tc.matching || ids(p) != tc.ids || p.Open != 100 {
			t.Errorf("%s: matching %d, ids %q; want %d, %q", tc.query, p.Matching, ids(p), tc.matching, tc.ids)
		}
	}
	p := listConns(list, q(""), now)
	want := []ServiceCount{{"branch.example.com", "sips", 30}, {"example.com", "sips", 60}, {"hq.example.com", "http", 10}}
	if fmt.Sprint(p.ByService) != fmt.Sprint(want) {
		t.Errorf("by service %v, want %v", p.ByService, want)
	}
	if c := p.Connections[1]; c.Identity != "sip:1001@example.com" || c.TLSVersion != "TLS 1.3" || c.ClientCN != "1001" || !c.TargetTLS {
		t.Errorf("connection %+v", c)
	}
	for _, bad := range []string{"sort=password", "order=sideways"} {
		v, _ := url.ParseQuery(bad)
		if _, ok := parseConnQuery(v); ok {
			t.Errorf("%s accepted", bad)
		}
	}
	// The page's links keep the query and move by a page.
	pq := listConns(list, q("q=example&sort=client&limit=10&offset=10"), now)
	if pq.Prev() != "/connections?offset=0&q=example&sort=client" || pq.Next() != "/connections?offset=20&q=example&sort=client" ||
		pq.SortLink("client") != "/connections?order=desc&q=example&sort=client" {
		t.Errorf("links %q %q %q", pq.Prev(), pq.Next(), pq.SortLink("client"))
	}
}

// BenchmarkListConns20000 is one page of 20,000 live connections, filtered
// and sorted on the server, as the connections page and API serve it.
func BenchmarkListConns20000(b *testing.B) {
	now := time.Now()
	list := phones(20000, now.Add(-time.Hour))
	for _, query := range []string{"", "sort=identity&order=desc", "q=branch&sort=bytes_out&offset=5000"} {
		v, _ := url.ParseQuery(query)
		cq, _ := parseConnQuery(v)
		b.Run("q="+query, func(b *testing.B) {
			for b.Loop() {
				if p := listConns(list, cq, now); len(p.Connections) == 0 {
					b.Fatal("empty page")
				}
			}
		})
	}
}
