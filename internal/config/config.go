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
	"github.com/custodylog/custody/ingest"
	"github.com/custodylog/custody/ingest/agent"
	"github.com/custodylog/custody/internal/kafkaconn"
	"github.com/custodylog/custody/internal/keyerr"
	"github.com/custodylog/custody/pipeline"
	"github.com/custodylog/custody/query"
)

// Config is the whole file. Each section belongs to the package that uses it.
type Config struct {
	Kafka     kafkaconn.Config  `yaml:"kafka"`
	S3        store.Config      `yaml:"s3"`
	Crypto    keyring.Config    `yaml:"crypto"`
	Ingest    ingest.Config     `yaml:"ingest"`
	Agent     agent.Config      `yaml:"agent"`
	Archive   pipeline.Config   `yaml:"archive"`
	Query     query.Config      `yaml:"query"`
	Retention archive.Retention `yaml:"retention"`
}

// Defaults returns a configuration for the local stack. Values in the file
// replace these field by field.
func Defaults() Config {
	return Config{
		Kafka:     kafkaconn.Defaults(),
		S3:        store.Defaults(),
		Crypto:    keyring.Defaults(),
		Ingest:    ingest.Defaults(),
		Agent:     agent.Defaults(),
		Archive:   pipeline.Defaults(),
		Query:     query.Defaults(),
		Retention: archive.DefaultRetention(),
	}
}

// Load reads path, applies environment overrides and resolves secrets and
// relative paths (relative to the file's directory). It does not validate:
// call Validate.
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
	dec := yaml.NewDecoder(bytes.NewReader(b))
	// Unknown keys are errors: a misspelt "retenton:" must not silently
	// leave the default in force.
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("cannot parse YAML: %w", err)
	}
	applyEnv(&c)
	c.Crypto.ResolvePaths(baseDir)
	c.Agent.ResolvePaths(baseDir)
	if err := c.Kafka.Resolve(baseDir); err != nil {
		return nil, keyerr.Prefix("kafka.", err)
	}
	if err := c.S3.Resolve(baseDir); err != nil {
		return nil, keyerr.Prefix("s3.", err)
	}
	if err := c.Ingest.Resolve(baseDir); err != nil {
		return nil, keyerr.Prefix("ingest.", err)
	}
	return &c, nil
}

// applyEnv applies the non-secret overrides used to point a config at
// another stack; secrets are read by each section's Resolve.
func applyEnv(c *Config) {
	if v := os.Getenv("CUSTODY_KAFKA_BROKERS"); v != "" {
		c.Kafka.Brokers = strings.Split(v, ",")
	}
	if v := os.Getenv("CUSTODY_S3_ENDPOINT"); v != "" {
		c.S3.Endpoint = v
	}
	if v := os.Getenv("CUSTODY_S3_BUCKET"); v != "" {
		c.S3.Bucket = v
	}
}

// Validate returns every problem, each naming its full key.
func (c *Config) Validate() error {
	return errors.Join(
		keyerr.Prefix("kafka.", c.Kafka.Validate()),
		keyerr.Prefix("s3.", c.S3.Validate()),
		keyerr.Prefix("crypto.", c.Crypto.Validate()),
		keyerr.Prefix("ingest.", c.Ingest.Validate()),
		keyerr.Prefix("agent.", c.Agent.Validate()),
		keyerr.Prefix("archive.", c.Archive.Validate()),
		keyerr.Prefix("query.", c.Query.Validate()),
		keyerr.Prefix("retention.", c.Retention.Validate()),
	)
}

// Problems is Validate as one line per problem, for `custody config check`.
func (c *Config) Problems() []string {
	var out []string
	for _, e := range keyerr.Flatten(c.Validate()) {
		out = append(out, e.Error())
	}
	return out
}
