package configs_test

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"gopkg.in/yaml.v3"
)

// FuzzParse feeds arbitrary YAML to Parse. It must never panic or hang; a
// refusal must be a non-empty, sorted Errors; and a configuration it
// accepts must survive being written out and read back unchanged.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("testdata/gatehouse.example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example) // the contract: every key, naming files that do not exist here
	f.Add([]byte("listen: {http: \":80\", sip: \"127.0.0.1:5060\"}\n" +
		"services: [{name: a.example.com/b, target: pbx.lan, ports: {http: 80, sip: 5060}, allow: {urls: [/], networks: {sip: [10.0.0.0/8]}}}]\n")) // a configuration that loads
	f.Add([]byte("limits: {first_packet_max: 64KiB}\nturn: {relay_ports: 1-2, deny_peers: [\"::ffff:10.0.0.0/104\"]}\n")) // each custom type
	f.Add([]byte("services:\n  - {name: x, ports: {h323: abc, h323s: 0, htps: 1}}\n"))                                    // several bad values on one line
	f.Add([]byte("blacklist: &b {<<: *b}\n"))                                                                             // a mapping merging itself
	f.Add([]byte("services: &s [*s]\nturn: &t {accounts: [*t]}\n"))                                                       // aliases forming cycles
	f.Add([]byte("listen:\n\thttp: \":80\"\n"))                                                                           // a syntax error (tab indentation)
	f.Add([]byte("blacklist: {treshold: 1, threshold: 1, threshold: 2}\n"))                                               // unknown and repeated keys

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := configs.Parse("fuzz.yaml", data)
		if err != nil {
			errs, ok := errors.AsType[configs.Errors](err)
			if !ok || len(errs) == 0 {
				t.Fatalf("error %v is not a non-empty configs.Errors", err)
			}
			if !slices.IsSortedFunc(errs, func(a, b *configs.Error) int { return a.Line - b.Line }) {
				t.Fatalf("errors not sorted by line:\n%v", err)
			}
			return
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("cannot write back an accepted configuration: %v", err)
		}
		c2, err := configs.Parse("fuzz.yaml", out)
		if err != nil {
			t.Fatalf("written back as\n%s\nit is refused:\n%v", out, err)
		}
		if out2, _ := yaml.Marshal(c2); !bytes.Equal(out, out2) {
			t.Fatalf("written back as\n%s\nit reads back as\n%s", out, out2)
		}
	})
}
