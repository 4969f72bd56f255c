package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// healthCmd implements `gatehouse health`: a liveness probe for a container's
// HEALTHCHECK or a monitoring agent on the appliance. It asks the running
// gatehouse's admin listener for GET /healthz and exits 0 on a 200, else 1
// with one line saying what went wrong. It exists so that the runtime image
// needs no curl or shell: the binary probes itself.
func healthCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/gatehouse/gatehouse.yaml", "configuration file (admin.listen is probed)")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gatehouse health: unexpected argument %q\n", fs.Arg(0))
		return 2
	}

	// The probe reads the same file the server does, through the same
	// loader, so "where is the admin listener" has one answer. A file that
	// no longer loads fails the probe: the server may still run on its
	// last good configuration, but it would not start again as it stands.
	cfg, err := configs.Load(*path)
	if err != nil {
		var errs configs.Errors
		n := 1
		if errors.As(err, &errs) {
			n = len(errs)
		}
		fmt.Fprintf(stderr, "gatehouse health: %s does not load (%d error(s); see `gatehouse check -config %s`)\n", *path, n, *path)
		return 1
	}
	if cfg.Admin.Listen == "" {
		fmt.Fprintf(stderr, "gatehouse health: admin.listen is not set in %s: there is no health endpoint to ask\n", *path)
		return 1
	}
	target := "https://" + probeAddr(cfg.Admin.Listen) + "/healthz"
	if err := probe(target, *timeout); err != nil {
		fmt.Fprintf(stderr, "gatehouse health: %s: %v\n", target, err)
		return 1
	}
	fmt.Fprintf(stdout, "gatehouse health: %s: ok\n", target)
	return 0
}

// probeAddr turns admin.listen into the address to dial. A listener on
// every address (":8443", "0.0.0.0:8443", "[::]:8443") is reached on IPv4
// loopback, which a wildcard listener always includes (Go listens dual-stack
// on "::") and which exists even where IPv6 is off in a container.
func probeAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen // configs validated it; keep whatever it is for the error message
	}
	if host == "" {
		return net.JoinHostPort("127.0.0.1", port)
	}
	if a, err := netip.ParseAddr(host); err == nil && a.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return listen
}

// probe GETs target and wants a 200.
//
// The admin listener's certificate is not verified, on purpose. It is often
// self-signed, or issued for the public service names, never for
// 127.0.0.1, so verification would fail on a healthy appliance. Skipping it
// is safe here because of what the probe is and is not: it dials the
// appliance's own admin address (loopback, or one of its own addresses),
// sends no credentials and no data, and learns one bit, alive or not. A party
// able to answer on the appliance's own loopback already controls the
// appliance; the worst it could do to this probe is make it say "healthy".
// This client must never be reused for anything that sends or trusts data.
func probe(target string, timeout time.Duration) error {
	client := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			// No Proxy: HTTPS_PROXY in the environment must not send a probe
			// of the appliance's own (non-loopback) admin address elsewhere.
			Proxy:             nil,
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
			DisableKeepAlives: true,
		},
		// /healthz answers itself; a redirect means something else is listening.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Get(target)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err // drop the `Get "URL":` prefix: the caller prints the URL
		}
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if msg == "" {
			return fmt.Errorf("answered %s", resp.Status)
		}
		return fmt.Errorf("answered %s: %q", resp.Status, msg)
	}
	return nil
}
