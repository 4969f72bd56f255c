package webui

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
	"github.com/gatehouse-pbx/gatehouse/proxy/acme"
)

// The certificates page lists the configured certificates and ACME's with
// names, issuer and expiry, soonest first, and marks those that expire
// within 21 days (testpki's last a day).
func TestCertificatesPage(t *testing.T) {
	ca := testpki.NewCA(t, "Example Issuing CA")
	hq := ca.Server("hq.example.com", "branch-a.example.com")
	cfg, err := configs.Parse("test.yaml", []byte(fmt.Sprintf("tls:\n  certificates: [{cert: %s, key: %s}]\n", hq.CertFile, hq.KeyFile)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// What acme.Manager.Certificates returns (proxy/acme tests it against
	// Pebble): one that is fine, one that is due.
	fromACME := []acme.Certificate{
		{Names: []string{"far.example.com"}, Issuer: "Pebble Intermediate CA 1", NotAfter: now.Add(60 * 24 * time.Hour)},
		{Names: []string{"due.example.com"}, Issuer: "Pebble Intermediate CA 1", NotAfter: now.Add(20 * 24 * time.Hour)},
	}
	s := &Server{now: func() time.Time { return now }, opts: Options{ACME: func() []acme.Certificate { return fromACME }}}
	s.cfg.Store(cfg)
	rows := s.certRows()
	var got []string
	for _, r := range rows {
		got = append(got, fmt.Sprintf("%s|%s|%s|%v", strings.Join(r.Names, ","), r.Issuer, r.Source, r.Soon))
	}
	want := []string{
		"hq.example.com,branch-a.example.com|Example Issuing CA|tls.certificates[0]|true",
		"due.example.com|Pebble Intermediate CA 1|acme|true",
		"far.example.com|Pebble Intermediate CA 1|acme|false",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var page bytes.Buffer
	if err := pages["certificates"].ExecuteTemplate(&page, "layout.html", &view{Title: "Certificates", Nav: "certificates", Certs: rows, Now: now}); err != nil {
		t.Fatal(err)
	}
	html := page.String()
	for _, s := range []string{"hq.example.com, branch-a.example.com", "Pebble Intermediate CA 1", "expires in 480h00m", `<tr class="error">`} {
		if !strings.Contains(html, s) {
			t.Errorf("page lacks %q", s)
		}
	}
	if n := strings.Count(html, `<tr class="error">`); n != 2 {
		t.Errorf("%d rows warned, want 2", n)
	}
}
