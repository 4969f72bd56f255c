package health

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	goldap "github.com/go-ldap/ldap/v3"
)

// The protocols' errors. A target that answers "unavailable" itself (HTTP
// or SIP 503, LDAP busy or unavailable) is down: it says so.
var (
	errUnavailable = errors.New("health: the target answered that it is unavailable")
	errNotSIP      = errors.New("health: the answer is not a SIP response")
)

// maxAnswer caps what a check reads of an answer's head.
const maxAnswer = 16 << 10

// checkName says what the active check of s does, for the UI and the log.
func checkName(s Spec) string {
	name := "tcp connect"
	if s.TLS != nil {
		name = "tls handshake"
	}
	switch s.Type.Family {
	case "http":
		return name + ", GET " + s.HTTPath
	case "sip":
		return name + ", OPTIONS"
	case "ldap":
		return name + ", root DSE search"
	}
	return name
}

// Probe is the active check of one target: it connects (TLS on TLS ports)
// and asks the protocol's cheap question. H.323 has none that a gatekeeper
// answers without a registration, so the connection is the check.
func Probe(ctx context.Context, s Spec) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() }) // Close of the Checker
	defer stop()
	if s.TLS != nil {
		tc := tls.Client(conn, s.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			return err
		}
		conn = tc
	}
	switch s.Type.Family {
	case "http":
		return probeHTTP(conn, s)
	case "sip":
		return probeSIP(conn, s)
	case "ldap":
		return probeLDAP(conn, s)
	}
	return nil
}

// probeHTTP GETs health.http_path: any answer but a 503 is up (a 404 or a
// 401 still comes from a running server).
func probeHTTP(conn net.Conn, s Spec) error {
	_, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: gatehouse-health\r\nConnection: close\r\n\r\n", s.HTTPath, s.Host)
	if err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, maxAnswer), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable {
		return fmt.Errorf("%w: %s", errUnavailable, resp.Status)
	}
	return nil
}

// probeSIP sends an OPTIONS for the service's domain (RFC 3261 11): any
// final response but a 503 is up.
func probeSIP(conn net.Conn, s Spec) error {
	transport := "TCP"
	if s.TLS != nil {
		transport = "TLS"
	}
	tag := token()
	local := conn.LocalAddr().String()
	req := "OPTIONS sip:" + s.Host + " SIP/2.0\r\n" +
		"Via: SIP/2.0/" + transport + " " + local + ";branch=z9hG4bK" + tag + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:gatehouse-health@" + s.Host + ">;tag=" + tag + "\r\n" +
		"To: <sip:" + s.Host + ">\r\n" +
		"Call-ID: " + tag + "@gatehouse-health\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Accept: application/sdp\r\n" +
		"User-Agent: gatehouse-health\r\n" +
		"Content-Length: 0\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		return err
	}
	tp := textproto.NewReader(bufio.NewReaderSize(conn, maxAnswer))
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return err
		}
		code, ok := sipStatus(line)
		if !ok {
			return errNotSIP
		}
		if _, err := tp.ReadMIMEHeader(); err != nil {
			return err
		}
		if code < 200 {
			continue // 100 Trying: the final answer follows (with no body)
		}
		if code == 503 {
			return fmt.Errorf("%w: SIP %d", errUnavailable, code)
		}
		return nil
	}
}

// sipStatus reads a status line "SIP/2.0 200 OK".
func sipStatus(line string) (int, bool) {
	rest, ok := strings.CutPrefix(line, "SIP/2.0 ")
	if !ok || len(rest) < 3 || (len(rest) > 3 && rest[3] != ' ') {
		return 0, false
	}
	code, err := strconv.Atoi(rest[:3])
	return code, err == nil && code >= 100 && code <= 699
}

// probeLDAP reads the root DSE (RFC 4512 5.1) anonymously: a server that
// answers the search is up, unless it answers busy or unavailable.
func probeLDAP(conn net.Conn, _ Spec) error {
	l := goldap.NewConn(conn, false)
	l.Start()
	defer l.Close()
	req := goldap.NewSearchRequest("", goldap.ScopeBaseObject, goldap.NeverDerefAliases, 1, 0, false,
		"(objectClass=*)", []string{"supportedLDAPVersion"}, nil)
	_, err := l.Search(req)
	switch {
	case err == nil:
		return nil
	case goldap.IsErrorWithCode(err, goldap.LDAPResultBusy), goldap.IsErrorWithCode(err, goldap.LDAPResultUnavailable):
		return fmt.Errorf("%w: %v", errUnavailable, err)
	}
	var le *goldap.Error
	if errors.As(err, &le) && le.ResultCode < goldap.ErrorNetwork {
		return nil // an LDAP answer (no such object, insufficient access): the server runs
	}
	return err
}

func token() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
