// Package protocols holds one sub-package per protocol gatehouse routes, and
// Handlers, which plugs them into the proxy's listener layer by service type.
// Adding a protocol means a new sub-package and a line here; the listener
// code does not change.
package protocols

import (
	"log/slog"

	"github.com/gatehouse-pbx/gatehouse/protocols/h323"
	"github.com/gatehouse-pbx/gatehouse/protocols/http"
	"github.com/gatehouse-pbx/gatehouse/protocols/ldap"
	"github.com/gatehouse-pbx/gatehouse/protocols/sip"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// Handlers returns the handler of every service type gatehouse knows.
// The stream sniffers' message caps follow limits.first_packet_max of the
// configuration each connection is accepted under (proxy.ConnInfo), so a
// reload changes them.
func Handlers(logger *slog.Logger) map[string]proxy.Handler {
	web := http.New(logger)
	sipH := proxy.Stream(&sip.Sniffer{})
	ldapH := proxy.Stream(&ldap.Sniffer{})
	h323H := proxy.Stream(h323.Sniffer{})
	return map[string]proxy.Handler{
		"http": web, "https": web,
		"sip": sipH, "sips": sipH,
		"ldap": ldapH, "ldaps": ldapH,
		"h323": h323H, "h323s": h323H,
	}
}
