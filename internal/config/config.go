// Package config composes the per-package configuration sections into the
// one YAML file Custody reads, applies environment overrides and validates.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/ingest"
	"github.com/custodylog/custody/ingest/agent"
	"github.com/custodylog/custody/ingest/normalize"
	"github.com/custodylog/custody/ingest/syslogd"
	"github.com/custodylog/custody/internal/kafkaconn"
	"github.com/custodylog/custody/internal/keyerr"
	"github.com/custodylog/custody/pipeline"
	"github.com/custodylog/custody/query"
	"github.com/custodylog/custody/serve"
)

// Config is the whole file. Each section belongs to the package that uses it.
type Config struct {
	Kafka     kafkaconn.Config  `yaml:"kafka"`
	S3        store.Config      `yaml:"s3"`
	Crypto    keyring.Config    `yaml:"crypto"`
	Events    event.Config      `yaml:"events"`
	Ingest    ingest.Config     `yaml:"ingest"`
	Agent     agent.Config      `yaml:"agent"`
	Syslog    syslogd.Config    `yaml:"syslog"`
	Normalize normalize.Config  `yaml:"normalize"`
	Archive   pipeline.Config   `yaml:"archive"`
	Query     query.Config      `yaml:"query"`
	Retention archive.Retention `yaml:"retention"`
	Serve     serve.Config      `yaml:"serve"`

	baseDir string           // the file's directory: relative paths start here
	checked map[Section]bool // the sections Check resolved and validated
}

// Section names one top-level section of the file.
type Section string

// The sections, in file order.
const (
	Kafka     Section = "kafka"
	S3        Section = "s3"
	Crypto    Section = "crypto"
	Events    Section = "events"
	Ingest    Section = "ingest"
	Agent     Section = "agent"
	Syslog    Section = "syslog"
	Normalize Section = "normalize"
	Archive   Section = "archive"
	Query     Section = "query"
	Retention Section = "retention"
	Serve     Section = "serve"
)

// All lists every section.
var All = []Section{Kafka, S3, Crypto, Events, Ingest, Agent, Syslog, Normalize, Archive, Query, Retention, Serve}

// Defaults returns a configuration for the local stack. Values in the file
// replace these field by field.
func Defaults() Config {
	return Config{
		Kafka:     kafkaconn.Defaults(),
		S3:        store.Defaults(),
		Crypto:    keyring.Defaults(),
		Events:    event.DefaultConfig(),
		Ingest:    ingest.Defaults(),
		Agent:     agent.Defaults(),
		Syslog:    syslogd.Defaults(),
		Normalize: normalize.Defaults(),
		Archive:   pipeline.Defaults(),
		Query:     query.Defaults(),
		Retention: archive.DefaultRetention(),
		Serve:     serve.Defaults(),
		baseDir:   ".",
	}
}

// Load reads path and applies the environment overrides. It neither reads
// secret files nor validates: Check does both, for the sections a command
// uses, so that a git server running the hook needs no S3 credentials.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read config: %w", err)
	}
	c, err := Parse(b, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse is Load on bytes already read; baseDir anchors relative paths.
func Parse(b []byte, baseDir string) (*Config, error) {
	c := Defaults()
	c.baseDir = baseDir
	dec := yaml.NewDecoder(bytes.NewReader(b))
	// Unknown keys are errors: a misspelt "retenton:" must not silently
	// leave the default in force.
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("cannot parse YAML: %w", err)
	}
	applyEnv(&c)
	return &c, nil
}

// applyEnv applies the non-secret overrides used to point a config at
// another stack (docs/CONFIG.md); secrets are read by each section's
// Resolve. A CA file override turns TLS on for that connection.
func applyEnv(c *Config) {
	if v := os.Getenv("CUSTODY_KAFKA_BROKERS"); v != "" {
		c.Kafka.Brokers = strings.Split(v, ",")
	}
	if v := os.Getenv("CUSTODY_KAFKA_TLS_CA_FILE"); v != "" {
		c.Kafka.TLS.Enabled, c.Kafka.TLS.CAFile = true, v
	}
	if v := os.Getenv("CUSTODY_KAFKA_SASL_MECHANISM"); v != "" {
		c.Kafka.SASL.Mechanism = v
	}
	if v := os.Getenv("CUSTODY_KAFKA_SASL_USERNAME"); v != "" {
		c.Kafka.SASL.Username = v
	}
	if v := os.Getenv("CUSTODY_S3_TLS_CA_FILE"); v != "" {
		c.S3.TLS.Enabled, c.S3.TLS.CAFile = true, v
	}
	if v := os.Getenv("CUSTODY_S3_ENDPOINT"); v != "" {
		c.S3.Endpoint = v
	}
	if v := os.Getenv("CUSTODY_S3_BUCKET"); v != "" {
		c.S3.Bucket = v
	}
}

// Check resolves the named sections (secrets from the environment or
// files, paths relative to the file) and validates them, with the checks
// between them that apply when both are used. Other sections are neither
// read nor checked. It returns every problem, each naming its full key.
// Check is meant to be called once per process, before the sections are
// used.
func (c *Config) Check(sections ...Section) error {
	use := map[Section]bool{}
	for _, s := range sections {
		use[s] = true
	}
	c.checked = use
	var errs []error
	check := func(s Section, resolve func() error, validate func() error) {
		if !use[s] {
			return
		}
		if resolve != nil {
			if err := resolve(); err != nil {
				errs = append(errs, keyerr.Prefix(string(s)+".", err))
				return
			}
		}
		errs = append(errs, keyerr.Prefix(string(s)+".", validate()))
	}
	d := c.baseDir
	check(Kafka, func() error { return c.Kafka.Resolve(d) }, c.Kafka.Validate)
	check(S3, func() error { return c.S3.Resolve(d) }, c.S3.Validate)
	check(Crypto, func() error { return c.Crypto.Resolve(d) }, c.Crypto.Validate)
	check(Events, func() error { return c.Events.Resolve(d) }, c.Events.Validate)
	check(Ingest, func() error { return c.Ingest.Resolve(d) }, c.Ingest.Validate)
	check(Agent, func() error { c.Agent.ResolvePaths(d); return nil }, c.Agent.Validate)
	check(Syslog, func() error { c.Syslog.TLS.ResolvePaths(d); return nil }, c.Syslog.Validate)
	check(Normalize, nil, c.Normalize.Validate)
	check(Archive, nil, c.Archive.Validate)
	check(Query, func() error { c.Query.ResolvePaths(d); return nil }, c.Query.Validate)
	check(Retention, nil, c.Retention.Validate)
	check(Serve, func() error { return c.Serve.Resolve(d) }, c.Serve.Validate)
	if use[Ingest] && use[Events] && int64(c.Ingest.MaxRequestBytes) < int64(c.Events.MaxEventBytes) {
		errs = append(errs, fmt.Errorf("ingest.max_request_bytes: %s is smaller than events.max_event_bytes %s", c.Ingest.MaxRequestBytes, c.Events.MaxEventBytes))
	}
	if use[Ingest] && use[Retention] {
		errs = append(errs, keyerr.Prefix("ingest.", c.Ingest.CheckClasses(c.Retention.NameSet())))
	}
	if use[Events] && use[Retention] {
		errs = append(errs, keyerr.Prefix("events.", c.Events.CheckClasses(c.Retention.NameSet())))
	}
	return errors.Join(errs...)
}

// Warnings are the insecure settings, allowed but risky, of the sections
// Check resolved; a command logs each at every start.
func (c *Config) Warnings() []string {
	if c.checked[Kafka] {
		return c.Kafka.Warnings()
	}
	return nil
}

// Problems is Check as one line per problem, for `custody config check`.
func (c *Config) Problems(sections ...Section) []string {
	var out []string
	for _, e := range keyerr.Flatten(c.Check(sections...)) {
		out = append(out, e.Error())
	}
	return out
}

// EventOptions are the limits, classes, minimisation rules and stamp that
// events entering through source get. The caller narrows them per sender
// (tenants, kinds). Without the events section checked (a reader writing
// its access_audit events holds no pseudonym keys) the limits are the
// defaults and nothing is minimised.
func (c *Config) EventOptions(source string) event.Options {
	o := event.Options{Source: source, DefaultClass: c.Retention.DefaultClass, Classes: c.Retention.NameSet()}
	if !c.checked[Events] {
		return o.WithConfig(event.DefaultConfig())
	}
	return o.WithConfig(c.Events)
}
