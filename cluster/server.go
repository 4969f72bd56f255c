package cluster

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// clusterName is the NATS cluster name of the embedded servers.
const clusterName = "gatehouse"

// startServer runs the embedded NATS server: routes on cfg.Listen to
// cfg.Peers under mutual TLS, JetStream files in cfg.StoreDir. A node
// without peers runs JetStream alone. This process connects in-process
// with token, the only credential the server accepts.
//
// The server still opens a client port, on 127.0.0.1 and a random port:
// with no client listener (DontListen) nats-server 2.15 never starts its
// routes. The token keeps other local processes out of it.
func startServer(cfg *configs.Cluster, token string, log *slog.Logger) (*server.Server, error) {
	if err := os.MkdirAll(cfg.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster.store_dir: %w", err)
	}
	opts := &server.Options{
		ServerName:         cfg.Node,
		Host:               "127.0.0.1",
		Port:               server.RANDOM_PORT,
		Authorization:      token,
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  4 << 30,
		NoSigs:             true,
	}
	if len(cfg.Peers) > 0 {
		host, portStr, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("cluster.listen %q: %w", cfg.Listen, err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil {
			return nil, fmt.Errorf("cluster.listen %q: bad port", cfg.Listen)
		}
		if host == "" {
			host = "0.0.0.0"
		}
		opts.Cluster = server.ClusterOpts{
			Name:       clusterName,
			Host:       host,
			Port:       port,
			TLSConfig:  routeTLS(cfg),
			TLSTimeout: 5,
			// The peers are listed in every node's file: gossiping
			// addresses a node sees itself by (0.0.0.0, NAT) only
			// leads the others astray.
			NoAdvertise: true,
		}
		for _, p := range cfg.Peers {
			opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats-route", Host: p})
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	ns.SetLoggerV2(natsLogger{log.With("component", "nats")}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS server not ready within 30s (is cluster.listen %s free?)", cfg.Listen)
	}
	return ns, nil
}

// routeTLS is mutual TLS between nodes: each node presents its certificate
// and accepts only peers whose certificate the cluster CA signed.
func routeTLS(cfg *configs.Cluster) *tls.Config {
	t := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAndVerifyClientCert,
		RootCAs:    cfg.TLS.CAPool,
		ClientCAs:  cfg.TLS.CAPool,
	}
	if cfg.TLS.Loaded != nil {
		t.Certificates = []tls.Certificate{*cfg.TLS.Loaded}
	}
	return t
}

// connect opens this node's client connection: in-process to the embedded
// server, or to cfg.NATS.URL. It reconnects for ever.
func connect(cfg *configs.Cluster, ns *server.Server, token string, log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("gatehouse " + cfg.Node),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("cluster: NATS connection lost", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("cluster: NATS connection restored", "server", c.ConnectedUrlRedacted())
		}),
	}
	if ns != nil {
		opts = append(opts, nats.InProcessServer(ns), nats.Token(token))
		return nats.Connect("", opts...)
	}
	if cfg.NATS.Creds != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATS.Creds))
	}
	if cfg.TLS.CAPool != nil || cfg.TLS.Loaded != nil {
		t := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.TLS.CAPool}
		if cfg.TLS.Loaded != nil {
			t.Certificates = []tls.Certificate{*cfg.TLS.Loaded}
		}
		opts = append(opts, nats.Secure(t))
	}
	return nats.Connect(cfg.NATS.URL, opts...)
}

// natsLogger writes the embedded server's log through slog. Its notices
// are routine (routes up, leaders elected): debug level.
type natsLogger struct{ log *slog.Logger }

func (l natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Tracef(format string, v ...any)  {}
