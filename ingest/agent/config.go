// Package agent tails log files on a host and ships their lines to Kafka
// as v1 events: JSON lines, nginx/Apache combined access logs (connection
// events) and OpenSSH auth logs (login events). It follows rotation and
// truncation, persists positions, and spools to disk when Kafka is down.
package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/custodylog/custody/internal/bytesize"
	"github.com/custodylog/custody/internal/secret"
)

// Config is the `agent` section.
type Config struct {
	// Name is the agent's source name in events; default the hostname.
	Name          string        `yaml:"name"`
	MetricsListen string        `yaml:"metrics_listen"`
	SpoolDir      string        `yaml:"spool_dir"`
	SpoolMaxBytes bytesize.Size `yaml:"spool_max_bytes"`
	// OutboxDir is the spool of the one-shot commands (custody send and
	// custody hook): what Kafka did not take is sent on their next run.
	OutboxDir string `yaml:"outbox_dir"`
	// PositionsFile records how far each file has been shipped.
	PositionsFile string        `yaml:"positions_file"`
	PollInterval  time.Duration `yaml:"poll_interval"`
	// Timezone of classic syslog timestamps, which carry none.
	Timezone string `yaml:"timezone"`
	Files    []File `yaml:"files"`
}

// File is one tailed file.
type File struct {
	Path string `yaml:"path"`
	// Format is json (v1 events, one per line), combined (nginx/Apache
	// access log) or sshd (OpenSSH auth log).
	Format string `yaml:"format"`
	// Tenant and App are set on events parsed from combined and sshd
	// lines. For json lines the line names its tenant, which must be
	// Tenant or one of Tenants.
	Tenant  string   `yaml:"tenant"`
	App     string   `yaml:"app"`
	Tenants []string `yaml:"tenants"`
}

// Defaults returns the configuration for the local stack.
func Defaults() Config {
	host, _ := os.Hostname()
	return Config{
		Name:          host,
		MetricsListen: "127.0.0.1:9466",
		SpoolDir:      "../.stack/spool/agent",
		SpoolMaxBytes: 1 << 30,
		OutboxDir:     "../.stack/spool/outbox",
		PositionsFile: "../.stack/agent-positions.json",
		PollInterval:  250 * time.Millisecond,
		Timezone:      "UTC",
	}
}

// ResolvePaths makes paths relative to baseDir.
func (c *Config) ResolvePaths(baseDir string) {
	c.SpoolDir = secret.Path(baseDir, c.SpoolDir)
	c.OutboxDir = secret.Path(baseDir, c.OutboxDir)
	c.PositionsFile = secret.Path(baseDir, c.PositionsFile)
	for i := range c.Files {
		c.Files[i].Path = secret.Path(baseDir, c.Files[i].Path)
	}
}

// Validate reports each problem as "key: reason".
func (c *Config) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("name: is required (the hostname could not be read)"))
	}
	if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
		errs = append(errs, fmt.Errorf("metrics_listen: %q is not host:port", c.MetricsListen))
	}
	for _, p := range []struct{ key, v string }{{"spool_dir", c.SpoolDir}, {"outbox_dir", c.OutboxDir}, {"positions_file", c.PositionsFile}} {
		if p.v == "" {
			errs = append(errs, fmt.Errorf("%s: is required", p.key))
		}
	}
	if c.SpoolDir != "" && c.SpoolDir == c.OutboxDir {
		errs = append(errs, errors.New("outbox_dir: must differ from spool_dir (each spool has one owner process)"))
	}
	if c.SpoolMaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("spool_max_bytes: %s is below the 1 MiB minimum", c.SpoolMaxBytes))
	}
	if c.PollInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("poll_interval: %s is below 10ms", c.PollInterval))
	}
	if _, err := time.LoadLocation(c.Timezone); err != nil {
		errs = append(errs, fmt.Errorf("timezone: %q is not a time zone: %v", c.Timezone, err))
	}
	seen := map[string]int{}
	for i, f := range c.Files {
		if f.Path == "" {
			errs = append(errs, fmt.Errorf("files[%d].path: is required", i))
		}
		if j, dup := seen[f.Path]; dup {
			errs = append(errs, fmt.Errorf("files[%d].path: %s is already tailed by files[%d]", i, f.Path, j))
		}
		seen[f.Path] = i
		switch f.Format {
		case "json":
			if f.Tenant == "" && len(f.Tenants) == 0 {
				errs = append(errs, fmt.Errorf("files[%d].tenants: json files need the tenants their lines may name", i))
			}
		case "combined", "sshd":
			if f.Tenant == "" {
				errs = append(errs, fmt.Errorf("files[%d].tenant: is required for %s files", i, f.Format))
			}
		default:
			errs = append(errs, fmt.Errorf("files[%d].format: %q is not json, combined or sshd", i, f.Format))
		}
	}
	return errors.Join(errs...)
}
