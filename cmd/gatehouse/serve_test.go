package main

import (
	"fmt"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// A renewed certificate must restart a TURN server that speaks TLS: the
// reload compares what the files hold, not their names.
func TestSameCertificates(t *testing.T) {
	ca := testpki.NewCA(t, "serve")
	first, renewed := ca.Server("turn.example.com"), ca.Server("turn.example.com")
	load := func(c *testpki.Issued) *configs.Config {
		t.Helper()
		cfg, err := configs.Parse("g.yaml", []byte(fmt.Sprintf("tls:\n  certificates: [{cert: %s, key: %s}]\n", c.CertFile, c.KeyFile)))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	if !sameCertificates(load(first), load(first)) {
		t.Error("the same files read twice differ")
	}
	if sameCertificates(load(first), load(renewed)) {
		t.Error("a renewed certificate is the same")
	}
	if sameCertificates(load(first), &configs.Config{}) {
		t.Error("no certificates is the same as one")
	}
}
