package webui

import (
	"net/http"
	"slices"
	"strconv"
	"time"
)

// certWarnAhead is how long before its expiry a certificate is shown as a
// warning: ACME renews a 90-day certificate 30 days ahead, so one that is
// still due in 21 days has failed to renew at least once.
const certWarnAhead = 21 * 24 * time.Hour

// CertRow is one certificate gatehouse offers, as the certificates page
// lists it.
type CertRow struct {
	Names    []string
	Issuer   string
	Source   string // "tls.certificates[i]" or "acme"
	NotAfter time.Time
	Expired  bool
	Soon     bool // expires within certWarnAhead
}

// certRows lists the configured certificates and ACME's, soonest expiry first.
func (s *Server) certRows() []CertRow {
	now := s.now()
	var rows []CertRow
	add := func(names []string, issuer, source string, notAfter time.Time) {
		rows = append(rows, CertRow{Names: names, Issuer: issuer, Source: source, NotAfter: notAfter,
			Expired: !now.Before(notAfter), Soon: notAfter.Sub(now) < certWarnAhead})
	}
	for i, ck := range s.cfg.Load().TLS.Certificates {
		if leaf := ck.Loaded.Leaf; leaf != nil {
			names := leaf.DNSNames
			for _, ip := range leaf.IPAddresses {
				names = append(names, ip.String())
			}
			if len(names) == 0 {
				names = []string{leaf.Subject.CommonName}
			}
			add(names, leaf.Issuer.CommonName, "tls.certificates["+strconv.Itoa(i)+"]", leaf.NotAfter)
		}
	}
	if s.opts.ACME != nil {
		for _, c := range s.opts.ACME() {
			add(c.Names, c.Issuer, "acme", c.NotAfter)
		}
	}
	slices.SortFunc(rows, func(a, b CertRow) int { return a.NotAfter.Compare(b.NotAfter) })
	return rows
}

func (s *Server) certificatesPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "certificates", &view{Title: "Certificates", Nav: "certificates", Certs: s.certRows()})
}
