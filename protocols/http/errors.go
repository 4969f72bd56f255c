package http

import (
	"errors"
	"strconv"

	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// The package's errors. Refusals of a client's request are proxy.Refusals,
// made where they are reported; these are the faults of an exchange.
var (
	// errClientGone ends a wait for a target's answer that nobody wants
	// any more.
	errClientGone = errors.New("http: the client closed the connection")
	// errUnexpected1xx is a target's 101 to a request that asked for no
	// upgrade, or to another protocol than the one asked for.
	errUnexpected1xx = errors.New("http: switching protocols unasked")
	// errDialFailed: no target connection (reported by proxy.Conn.Dial).
	errDialFailed = errors.New("http: dial failed")
	// errNoRoute: a PROXY protocol dial for a request that was not routed.
	errNoRoute = errors.New("http: no route for a PROXY protocol dial")
	// errInformational: more 1xx answers than maxInformational.
	errInformational = errors.New("http: too many informational responses")
	// errNoEntry: a request net/http hands over without the connection it
	// came on (a bug, answered 500).
	errNoEntry = errors.New("http: request without a gatehouse connection")
)

// credentialsRejected is the refusal reported when a target answers a
// request carrying credentials with status (401 or 403).
func credentialsRejected(status int) *proxy.Refusal {
	return proxy.Refuse(proxy.ReasonCredentials, strconv.Itoa(status), nil)
}
