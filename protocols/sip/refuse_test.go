package sip

import (
	"strings"
	"testing"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

func TestRefusalReply(t *testing.T) {
	invite := "\r\n\r\n" + request("INVITE", "From: <sip:alice@unknown.example>;tag=a\r\n",
		"Via: SIP/2.0/TCP 10.0.0.9:5060;branch=z9hG4bK.x0\r\n", "Content-Length: 4\r\n\r\nv=0\n")
	for _, tc := range []struct {
		name, first string
		reason      *proxy.Refusal
		status      int // 0: no reply
	}{
		{"unknown service", invite, proxy.Refuse(proxy.ReasonUnknownService, "", nil), 403},
		{"network not allowed", invite, proxy.Refuse(proxy.ReasonNetwork, "", nil), 403},
		{"target unreachable", invite, proxy.Refuse(proxy.ReasonUnreachable, "", nil), 503},
		{"no agent tunnel", invite, proxy.ErrNoTunnel, 503},
		{"no From", request("REGISTER", "", "l: 0\r\n\r\n"), ErrNoFrom, 400},
		{"From without host", request("REGISTER", "From: <sip:a@>\r\n", "l: 0\r\n\r\n"), ErrFromNoHost, 400},
		{"too large", request("REGISTER", alice, "l: 99999999\r\n\r\n"), ErrTooLarge, 513},
		{"too large, header block unfinished", request("REGISTER", alice), proxy.Refuse(proxy.ReasonTooLarge, "", nil), 0},
		{"not SIP", "GET / HTTP/1.1\r\n\r\n", ErrNotSIP, 0},
		{"a response", "SIP/2.0 200 OK\r\n" + alice + "l: 0\r\n\r\n", ErrNotRequest, 0},
		{"an ACK", request("ACK", alice, "l: 0\r\n\r\n"), proxy.Refuse(proxy.ReasonUnknownService, "", nil), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply := new(Sniffer).RefusalReply([]byte(tc.first), tc.reason)
			if tc.status == 0 {
				if reply != nil {
					t.Fatalf("reply %q", reply)
				}
				return
			}
			msg, err := sipmsg.ParseMessage(reply)
			if err != nil {
				t.Fatalf("reply is not SIP: %v\n%s", err, reply)
			}
			res, ok := msg.(*sipmsg.Response)
			if !ok || res.StatusCode != tc.status || res.CSeq() == nil || res.CallID() == nil || res.Via() == nil {
				t.Fatalf("reply:\n%s", reply)
			}
			if strings.Contains(string(reply), "received") {
				t.Fatalf("reply claims a received address it does not know:\n%s", reply)
			}
		})
	}
}
