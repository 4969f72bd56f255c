package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/gatehouse-pbx/gatehouse/configs"
	"github.com/gatehouse-pbx/gatehouse/protocols"
	"github.com/gatehouse-pbx/gatehouse/proxy"
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

	srv, err := proxy.NewServer(cfg, proxy.Options{
		Handlers: protocols.Handlers(log),
		Logger:   log,
	})
	if err != nil {
		return err
	}
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
