package configs_test

import (
	"strings"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

func TestDefaultMaxConnsLeavesAReserve(t *testing.T) {
	for _, tt := range []struct{ limit, want int }{
		{0, 0},         // unknown: no cap
		{256, 96},      // (256-64)/2
		{1024, 461},    // (1024-102)/2
		{65536, 29491}, // (65536-6553)/2
		{1 << 20, 471859},
	} {
		if got := configs.DefaultMaxConns(tt.limit); got != tt.want {
			t.Errorf("DefaultMaxConns(%d) = %d, want %d", tt.limit, got, tt.want)
		}
		if tt.limit > 0 && 2*configs.DefaultMaxConns(tt.limit)+64 > tt.limit {
			t.Errorf("DefaultMaxConns(%d) leaves less than 64 descriptors", tt.limit)
		}
	}
}

func TestDescriptorWarnings(t *testing.T) {
	for _, tt := range []struct {
		name   string
		yaml   string
		limit  int
		expect []string
	}{
		{"defaults fit", `limits: {max_conns_per_ip: 100}`, 1024, nil},
		{"too many conns", `limits: {max_conns: 1000}`, 1024, []string{"limits.max_conns: 1000 connections need up to 2000 descriptors"}},
		{"no cap", `limits: {max_conns: 0}`, 1024, []string{"limits.max_conns: 0 (no cap)"}},
		{"per client above total", `limits: {max_conns: 100, max_conns_per_ip: 500}`, 1024, []string{"limits.max_conns_per_ip: 500 is above limits.max_conns (100)"}},
		{"unknown limit", `limits: {max_conns: 100000}`, 0, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := configs.Parse("", []byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if tt.name == "defaults fit" {
				c.Limits.MaxConns = configs.DefaultMaxConns(tt.limit)
			}
			got := configs.DescriptorWarnings(c, tt.limit)
			if len(got) != len(tt.expect) {
				t.Fatalf("warnings %q, want %d", got, len(tt.expect))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.expect[i]) {
					t.Errorf("warning %q, want it to start %q", got[i], tt.expect[i])
				}
			}
		})
	}
}
