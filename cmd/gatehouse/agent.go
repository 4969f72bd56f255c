package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/gatehouse-pbx/gatehouse/agent"
	"github.com/gatehouse-pbx/gatehouse/configs"
)

// agentCommand is `gatehouse agent -config FILE [-check]`: run the agent
// of FILE until SIGTERM (it drains, then exits 0), or only check FILE.
func agentCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/gatehouse-agent/agent.yaml", "agent configuration file")
	onlyCheck := fs.Bool("check", false, "validate the file and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *onlyCheck {
		return checkAgent(*path, stdout, stderr)
	}
	cfg, err := configs.LoadAgent(*path)
	if err != nil {
		return configErrors(*path, err, stderr)
	}
	var level slog.LevelVar
	log := newLogger(cfg.Log, &level, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log.Info("gatehouse agent started", "version", version, "config", *path, "edges", cfg.Edges, "services", len(cfg.Services))
	agent.New(cfg, log, agent.DefaultBackoff()).Run(ctx)
	log.Info("stopped")
	return 0
}
