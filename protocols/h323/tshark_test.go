package h323

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
)

// TestTshark is the independent oracle for the test vectors: Wireshark's
// H.225.0 dissector must decode each of them without complaint, and show
// every gatekeeper ID, alias, RAS message and reject reason that gatehouse
// reads from it. tshark decodes TCP port 1720 as TPKT, Q.931 and H.225.0
// by default, and the RAS inside H.460.17 with it.
func TestTshark(t *testing.T) {
	tshark := testpeer.Program(t, "tshark", "tshark")
	packets := make([][]byte, len(vectors))
	fromTarget := make([]bool, len(vectors))
	for i, v := range vectors {
		packets[i], fromTarget[i] = load(t, v.name), v.fromTarget
	}
	pcap := filepath.Join(t.TempDir(), "vectors.pcap")
	if err := os.WriteFile(pcap, writePcap(packets, fromTarget), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tshark, "-n", "-r", pcap, "-V").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	frames := regexp.MustCompile(`(?m)^Frame \d+:`).Split(string(out), -1)[1:]
	if len(frames) != len(vectors) {
		t.Fatalf("tshark shows %d frames, want %d", len(frames), len(vectors))
	}
	for i, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			out := frames[i]
			if bad := regexp.MustCompile(`(?m)^.*(Malformed|Expert Info \((Error|Warning)|Dissector bug|not dissected).*$`).FindString(out); bad != "" {
				t.Fatalf("tshark does not decode the vector cleanly: %s\n%s", bad, out)
			}
			shark := sharkFacts(out)
			ours, err := gatehouseFacts(packets[i])
			if err != nil {
				t.Fatal(err)
			}
			if len(ours["RasMessage"]) > 0 && !slices.Equal(ours["RasMessage"], shark["RasMessage"]) {
				t.Errorf("tunnelled RAS messages: gatehouse %v, tshark %v", ours["RasMessage"], shark["RasMessage"])
			}
			for field, values := range ours {
				for _, v := range values {
					if !slices.Contains(shark[field], v) {
						t.Errorf("gatehouse reads %s %q; tshark shows %q", field, v, shark[field])
					}
				}
			}
			if t.Failed() {
				t.Logf("tshark -V:\n%s", out)
			}
		})
	}
}

// sharkFact matches the lines of tshark -V that gatehouse's reading is
// compared with: "gatekeeperIdentifier: example.com", "h323-ID: alice",
// "RasMessage: gatekeeperRequest (0)", "rejectReason: securityDenial (11)".
var sharkFact = regexp.MustCompile(`(?m)^\s*(gatekeeperIdentifier|h323-ID|url-ID|email-ID|dialledDigits|RasMessage|rejectReason): (.*?)\s*$`)

var sharkChoice = regexp.MustCompile(`^(\S+) \((\d+)\)$`)

func sharkFacts(out string) map[string][]string {
	facts := map[string][]string{}
	for _, m := range sharkFact.FindAllStringSubmatch(out, -1) {
		field, value := m[1], m[2]
		if c := sharkChoice.FindStringSubmatch(value); c != nil {
			switch field {
			case "RasMessage":
				value = c[2] // the alternative's number
			case "rejectReason":
				value = c[1] // its name
			}
		}
		facts[field] = append(facts[field], value)
	}
	return facts
}

// gatehouseFacts is what gatehouse's own layers read from a packet, named
// as tshark names it.
func gatehouseFacts(packet []byte) (map[string][]string, error) {
	facts := map[string][]string{}
	addAliases := func(as []alias) {
		for _, a := range as {
			field := map[aliasKind]string{aliasH323ID: "h323-ID", aliasURL: "url-ID", aliasEmail: "email-ID", aliasDigits: "dialledDigits"}[a.kind]
			facts[field] = append(facts[field], a.String())
		}
	}
	n, err := Frame(packet)
	if err != nil {
		return nil, err
	}
	q, err := parseQ931(packet[tpktHeaderLen:n])
	if err != nil {
		return nil, err
	}
	uu, err := decodeUserInfo(q.userUser, q.msgType)
	if err != nil {
		return nil, err
	}
	addAliases(uu.dest)
	for _, raw := range uu.ras {
		m, err := decodeRAS(raw)
		if err != nil {
			return nil, err
		}
		if m.kind == rasOther {
			return nil, fmt.Errorf("a RAS extension alternative: no vector has one")
		}
		facts["RasMessage"] = append(facts["RasMessage"], strconv.Itoa(m.kind))
		if m.gatekeeperID != nil {
			facts["gatekeeperIdentifier"] = append(facts["gatekeeperIdentifier"], bmpString(m.gatekeeperID))
		}
		addAliases(m.aliases)
		if m.reject != "" {
			facts["rejectReason"] = append(facts["rejectReason"], m.reject)
		}
	}
	return facts, nil
}
