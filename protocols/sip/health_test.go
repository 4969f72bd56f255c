package sip

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/health"
)

// TestHealthProbeOptions: the SIP check's OPTIONS is answered by a real
// SIP stack (sipgo, as the test PBX), and a closed port fails it.
func TestHealthProbeOptions(t *testing.T) {
	p := startPBX(t, users)
	typ, _ := configs.LookupType("sip")
	probe := func(addr string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return health.Probe(ctx, health.Spec{Addr: addr, Type: typ, Host: "example.com"})
	}
	if err := probe(p.addr); err != nil {
		t.Errorf("OPTIONS to the PBX: %v", err)
	}
	if err := probe("127.0.0.1:" + freePort(t)); err == nil {
		t.Error("a closed port passed the check")
	}
}
