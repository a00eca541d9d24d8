package main

import (
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/config"
	"github.com/custodylog/custody/internal/telemetry"
)

// setup loads and validates the configuration and builds the logger: the
// start of every command that runs Custody's components.
func setup(cmd *cobra.Command, g *globals) (*config.Config, *zap.Logger, error) {
	cfg, err := loadValid(cmd, g)
	if err != nil {
		return nil, nil, err
	}
	log, err := telemetry.NewLogger(g.logFormat, g.logLevel)
	if err != nil {
		return nil, nil, err
	}
	return cfg, log, nil
}

// eventOptions are the validation limits and stamp that events entering
// through source get, from the ingest and retention sections.
func eventOptions(cfg *config.Config, source string) event.Options {
	return event.Options{Source: source, DefaultClass: cfg.Retention.DefaultClass, Classes: classSet(cfg),
		MaxEventBytes: int(cfg.Ingest.MaxEventBytes), MaxFutureSkew: cfg.Ingest.MaxFutureSkew, LateAfter: cfg.Ingest.LateAfter}
}
