package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/config"
	"github.com/custodylog/custody/internal/telemetry"
)

// sections lists, per command, the configuration sections it reads. A
// command resolves and validates only these (least privilege: a git server
// running the hook holds no archive credentials, an archiver no ingest
// tokens). `custody config check --for COMMAND` checks the same set.
var sections = map[string][]config.Section{
	"ingest":                          {config.Kafka, config.Events, config.Ingest, config.Syslog, config.Retention},
	"agent":                           {config.Kafka, config.Events, config.Agent, config.Retention},
	"normalize":                       {config.Kafka, config.Events, config.Normalize, config.Retention},
	"send":                            {config.Kafka, config.Events, config.Agent, config.Retention},
	"hook":                            {config.Kafka, config.Events, config.Agent, config.Retention},
	"archive init":                    {config.S3, config.Retention},
	"archive run":                     {config.Kafka, config.S3, config.Crypto, config.Archive, config.Retention},
	"query":                           {config.Kafka, config.S3, config.Crypto, config.Query, config.Retention},
	"keys":                            {config.Crypto, config.Retention},
	"keys list --bucket":              {config.Crypto, config.Retention, config.S3},
	"config check":                    config.All,
	"retention run":                   {config.Kafka, config.S3, config.Crypto, config.Query, config.Retention},
	"serve":                           {config.Kafka, config.S3, config.Crypto, config.Query, config.Retention, config.Serve},
	"hold":                            {config.Kafka, config.S3, config.Crypto, config.Query, config.Retention},
	"verify":                          {config.S3, config.Crypto, config.Retention},
	"verify --kafka":                  {config.S3, config.Crypto, config.Retention, config.Kafka, config.Archive},
	"export pubkey":                   {config.Crypto, config.Retention},
	"dlq":                             {config.Kafka, config.Archive, config.Retention},
	"export verify --against-archive": {config.S3, config.Crypto, config.Retention},
}

// loadValid loads the configuration and refuses to go on if any section
// the command uses is invalid, printing every problem as `config check`
// does.
func loadValid(cmd *cobra.Command, g *globals, use []config.Section) (*config.Config, error) {
	cfg, err := config.Load(g.configPath)
	if err != nil {
		return nil, err
	}
	if ps := cfg.Problems(use...); len(ps) > 0 {
		for _, p := range ps {
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", g.configPath, p)
		}
		return nil, fmt.Errorf("%s: %d configuration problem(s); see `custody config check`", g.configPath, len(ps))
	}
	return cfg, nil
}

// setup loads and validates the sections a command uses and builds the
// logger: the start of every command that runs Custody's components.
func setup(cmd *cobra.Command, g *globals, use []config.Section) (*config.Config, *zap.Logger, error) {
	cfg, err := loadValid(cmd, g, use)
	if err != nil {
		return nil, nil, err
	}
	log, err := telemetry.NewLogger(g.logFormat, g.logLevel)
	if err != nil {
		return nil, nil, err
	}
	for _, w := range cfg.Warnings() {
		log.Warn("insecure configuration", zap.String("setting", w))
	}
	return cfg, log, nil
}

// senderOptions are the event options of the agent, custody send and the
// hook: every kind but access_audit, which only Custody's readers write,
// so a log line cannot forge an entry in the access log.
func senderOptions(cfg *config.Config, source string) event.Options {
	o := cfg.EventOptions(source)
	o.Kinds = map[event.Kind]bool{}
	for _, k := range event.Kinds {
		o.Kinds[k] = k != event.KindAccessAudit
	}
	return o
}
