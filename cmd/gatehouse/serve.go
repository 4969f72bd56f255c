package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"syscall"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/protocols"
	"github.com/gatehouse-pbx/gatehouse/proxy"
	"github.com/gatehouse-pbx/gatehouse/turn"
)

// serve runs gatehouse until ctx is cancelled (SIGTERM, SIGINT), reloading
// the configuration on SIGHUP.
func serve(ctx context.Context, path string, logw io.Writer) error {
	cfg, err := configs.Load(path)
	if err != nil {
		return err
	}
	var level slog.LevelVar
	log := newLogger(cfg.Log, &level, logw)
	slog.SetDefault(log)

	bl, err := blacklist.New(cfg.Blacklist, blacklist.Options{Logger: log})
	if err != nil {
		return err
	}
	bl.Start()
	defer bl.Close()

	srv, err := proxy.NewServer(cfg, proxy.Options{
		Handlers: protocols.Handlers(cfg.Limits, log),
		Guard:    bl,
		Logger:   log,
	})
	if err != nil {
		return err
	}
	relay, err := startTURN(cfg, bl, log)
	if err != nil {
		srv.Close()
		return err
	}
	defer func() {
		if relay != nil {
			relay.Close()
		}
	}()
	log.Info("gatehouse started", "version", version, "config", path, "services", len(cfg.Services))

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			next, err := configs.Load(path)
			if err != nil {
				logConfigErrors(log, err)
				log.Error("reload failed: keeping the running configuration", "config", path)
				continue
			}
			if err := srv.Reload(next); err != nil {
				log.Error("reload failed: keeping the running configuration", "config", path, "err", err)
				continue
			}
			bl.Reconfigure(next.Blacklist)
			if !reflect.DeepEqual(next.TURN, cfg.TURN) {
				// pion's server cannot change settings in place: restart it.
				if relay != nil {
					relay.Close()
				}
				if relay, err = startTURN(next, bl, log); err != nil {
					log.Error("TURN server not restarted", "err", err)
				}
			}
			level.Set(parseLevel(next.Log.Level))
			cfg = next
			log.Info("configuration reloaded", "config", path, "services", len(cfg.Services))
		case <-ctx.Done():
			log.Info("shutting down", "grace", cfg.Limits.ShutdownTimeout)
			sctx, cancel := context.WithTimeout(context.Background(), cfg.Limits.ShutdownTimeout)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				log.Warn("shutdown grace period over: connections closed", "err", err)
			}
			log.Info("stopped")
			return nil
		}
	}
}

// startTURN starts the STUN/TURN server when turn.listen is set.
func startTURN(cfg *configs.Config, bl *blacklist.List, log *slog.Logger) (*turn.Server, error) {
	if cfg.TURN.Listen == "" {
		return nil, nil
	}
	var certs []tls.Certificate
	for _, ck := range cfg.TLS.Certificates {
		certs = append(certs, ck.Loaded)
	}
	return turn.New(cfg.TURN, turn.Options{Guard: bl, Logger: log, Certificates: certs})
}

func logConfigErrors(log *slog.Logger, err error) {
	var errs configs.Errors
	if !errors.As(err, &errs) {
		log.Error("configuration", "err", err)
		return
	}
	for _, e := range errs {
		log.Error("configuration", "file", e.File, "line", e.Line, "key", e.Key, "err", e.Msg)
	}
}
