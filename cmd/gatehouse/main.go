// Command gatehouse runs the reverse proxy appliance.
//
//	gatehouse run -config FILE      serve until SIGTERM; SIGHUP reloads FILE
//	gatehouse check -config FILE    validate FILE and print a summary or every error
//	gatehouse agent -config FILE    run an agent that dials out to its edges
//	gatehouse fingerprint CERT      print a certificate's SPKI fingerprint
//	gatehouse hash-password         read a password on stdin, print its bcrypt hash
//	gatehouse health -config FILE   ask the running gatehouse's admin listener for /healthz
//	gatehouse version               print the version
package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/internal/gcpace"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "run" || os.Args[1] == "agent") {
		// Rarer collections while the live heap is small (see gcpace);
		// the process's whole life, so no stop.
		gcpace.Start(gcpace.Headroom)
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `usage:
  gatehouse run -config FILE      serve; SIGHUP reloads FILE, SIGTERM stops
  gatehouse check -config FILE    validate FILE: a summary, or every error with its line
  gatehouse agent -config FILE    run an agent: dial the edges of FILE and serve its services
                                  through the tunnels (-check: validate FILE only)
  gatehouse fingerprint CERT      print the SPKI fingerprint of a certificate (edge_fingerprint)
  gatehouse hash-password         read a password on stdin, print its bcrypt hash
  gatehouse health -config FILE   exit 0 when the running gatehouse answers GET /healthz
                                  on admin.listen, else 1 (for HEALTHCHECK and monitoring)
  gatehouse version               print the version
`

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run", "check":
		fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
		fs.SetOutput(stderr)
		path := fs.String("config", "/etc/gatehouse/gatehouse.yaml", "configuration file")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if args[0] == "check" {
			return check(*path, stdout, stderr)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		if err := serve(ctx, *path, stderr); err != nil {
			fmt.Fprintln(stderr, "gatehouse:", err)
			return 1
		}
		return 0
	case "fingerprint":
		return fingerprint(args[1:], stdout, stderr)
	case "agent":
		return agentCommand(args[1:], stdout, stderr)
	case "hash-password":
		return hashPassword(args[1:], stdin, stdout, stderr)
	case "health":
		return healthCmd(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "gatehouse", version)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "gatehouse: unknown command %q\n%s", args[0], usage)
	return 2
}

func check(path string, stdout, stderr io.Writer) int {
	if data, err := os.ReadFile(path); err == nil && configs.IsAgentFile(data) {
		return checkAgent(path, stdout, stderr)
	}
	cfg, err := configs.Load(path)
	if err != nil {
		return configErrors(path, err, stderr)
	}
	fmt.Fprintf(stdout, "%s: OK\n%s", path, cfg.Summary())
	// Warnings about this machine's descriptor limit: the file is valid,
	// but a flood would run gatehouse out of descriptors before a cap stops it.
	for _, w := range configs.DescriptorWarnings(cfg, configs.FileLimit()) {
		fmt.Fprintf(stderr, "%s: warning: %s\n", path, w)
	}
	for _, w := range configs.Warnings(cfg) {
		fmt.Fprintf(stderr, "%s: warning: %s\n", path, w)
	}
	return 0
}

// checkAgent checks an agent file (one with edges), for `gatehouse check`
// and `gatehouse agent -check`.
func checkAgent(path string, stdout, stderr io.Writer) int {
	cfg, err := configs.LoadAgent(path)
	if err != nil {
		return configErrors(path, err, stderr)
	}
	fmt.Fprintf(stdout, "%s: OK\n%s", path, cfg.Summary())
	return 0
}

// configErrors prints every problem of a configuration file; it returns 1.
func configErrors(path string, err error, stderr io.Writer) int {
	var errs configs.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(stderr, e)
		}
		fmt.Fprintf(stderr, "%s: %d error(s)\n", path, len(errs))
	} else {
		fmt.Fprintln(stderr, err)
	}
	return 1
}

// fingerprint prints the SPKI fingerprint of each certificate in a PEM
// file, as an agent's edge_fingerprint holds it.
func fingerprint(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: gatehouse fingerprint CERT.pem")
		return 2
	}
	data, err := os.ReadFile(args[0])
	if err != nil {
		fmt.Fprintln(stderr, "gatehouse:", err)
		return 1
	}
	n := 0
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			fmt.Fprintf(stderr, "gatehouse: %s: certificate %d: %v\n", args[0], n+1, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s  %s\n", configs.Fingerprint(cert), cert.Subject.CommonName)
		n++
	}
	if n == 0 {
		fmt.Fprintf(stderr, "gatehouse: %s holds no PEM certificate\n", args[0])
		return 1
	}
	return 0
}

const hashPasswordUsage = `usage: gatehouse hash-password < FILE

Reads one password from the first line of stdin and prints its bcrypt hash,
for admin.users[].password_hash:

  echo 'long random secret' | gatehouse hash-password
`

func hashPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hash-password", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the messages below say it once, to the right stream
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, hashPasswordUsage)
			return 0
		}
		fmt.Fprintf(stderr, "gatehouse hash-password: %v\n%s", err, hashPasswordUsage)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gatehouse hash-password: unexpected argument %q (the password is read from stdin)\n%s", fs.Arg(0), hashPasswordUsage)
		return 2
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(stderr, "gatehouse: reading password:", err)
		return 1
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		fmt.Fprintln(stderr, "gatehouse: empty password (give it on stdin: echo -n secret | gatehouse hash-password)")
		return 1
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		fmt.Fprintln(stderr, "gatehouse:", err)
		return 1
	}
	fmt.Fprintln(stdout, string(hash))
	return 0
}

// newLogger builds the process logger; level is shared so a reload can change it.
func newLogger(cfg configs.Log, level *slog.LevelVar, w io.Writer) *slog.Logger {
	level.Set(parseLevel(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}
