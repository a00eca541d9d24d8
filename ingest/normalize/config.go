// Package normalize is `custody normalize`: a Kafka consumer group that
// reads raw log records that other producers put into Kafka (rsyslog's
// omkafka, syslog-ng's kafka-c, Vector, Fluent Bit), turns each into a v1
// event as custody ingest would (validation, redaction, a derived ID) and
// produces it to the events topic; records that cannot be turned into
// events go to a dead-letter topic with the reason. Offsets are committed
// only after Kafka acknowledged what was produced for them.
package normalize

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"time"

	"github.com/custodylog/custody/ingest/syslogd"
)

// Config is the `normalize` section.
type Config struct {
	GroupID string `yaml:"group_id"`
	// InstanceID, if set, makes this member static (KIP-345): restarted
	// with the same ID, after a crash too, it gets its partitions back at
	// once instead of after the group's session timeout (45 s). Each
	// member needs its own; a stopped static member's partitions wait for
	// that timeout before others take them.
	InstanceID    string `yaml:"instance_id"`
	MetricsListen string `yaml:"metrics_listen"`
	// DLQTopic receives the records that cannot be turned into events,
	// with the reason and where they came from in headers (the headers of
	// the archiver's dead letters, docs/PIPELINE.md §9).
	DLQTopic string `yaml:"dlq_topic"`
	// Timezone is that of classic syslog timestamps in sshd lines.
	Timezone string `yaml:"timezone"`
	// StructuredDataID is as syslog.structured_data_id, for rfc5424 inputs.
	StructuredDataID string  `yaml:"structured_data_id"`
	Inputs           []Input `yaml:"inputs"`
}

// Input is one raw topic and how to read its records.
type Input struct {
	Topic string `yaml:"topic"`
	// Format is json (each record is a v1 event), combined (an nginx or
	// Apache access log line), sshd (an auth log line in classic syslog
	// or RFC 3339 form) or rfc5424 (a syslog message, mapped by Rules as
	// the syslog listener maps them).
	Format string `yaml:"format"`
	// Tenant and App name the events of combined and sshd records;
	// Tenants bounds the tenants json events may name.
	Tenant  string         `yaml:"tenant"`
	Tenants []string       `yaml:"tenants"`
	App     string         `yaml:"app"`
	Rules   []syslogd.Rule `yaml:"rules"`
}

var instanceID = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// Defaults returns the documented defaults, with no inputs.
func Defaults() Config {
	return Config{GroupID: "custody-normalize", MetricsListen: "127.0.0.1:9467", DLQTopic: "custody.raw.dlq", Timezone: "UTC", StructuredDataID: "custody@32473"}
}

// Validate reports each problem as "key: reason".
func (c *Config) Validate() error {
	var errs []error
	if c.GroupID == "" {
		errs = append(errs, errors.New("group_id: is required"))
	}
	if c.InstanceID != "" && !instanceID.MatchString(c.InstanceID) {
		errs = append(errs, fmt.Errorf("instance_id: %q is not 1-249 characters of a-z A-Z 0-9 . _ -", c.InstanceID))
	}
	if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
		errs = append(errs, fmt.Errorf("metrics_listen: %q is not host:port", c.MetricsListen))
	}
	if c.DLQTopic == "" {
		errs = append(errs, errors.New("dlq_topic: is required"))
	}
	if _, err := time.LoadLocation(c.Timezone); err != nil {
		errs = append(errs, fmt.Errorf("timezone: %v", err))
	}
	seen := map[string]bool{}
	for i, in := range c.Inputs {
		switch {
		case in.Topic == "":
			errs = append(errs, fmt.Errorf("inputs[%d].topic: is required", i))
		case seen[in.Topic]:
			errs = append(errs, fmt.Errorf("inputs[%d].topic: %s is listed twice", i, in.Topic))
		case in.Topic == c.DLQTopic:
			errs = append(errs, fmt.Errorf("inputs[%d].topic: %s is the dead-letter topic", i, in.Topic))
		}
		seen[in.Topic] = true
		switch in.Format {
		case "json":
			if len(in.Tenants) == 0 && in.Tenant == "" {
				errs = append(errs, fmt.Errorf("inputs[%d]: json needs tenants, the tenants its events may name", i))
			}
		case "combined", "sshd":
			if in.Tenant == "" {
				errs = append(errs, fmt.Errorf("inputs[%d].tenant: is required for %s", i, in.Format))
			}
		case "rfc5424":
			if len(in.Rules) == 0 {
				errs = append(errs, fmt.Errorf("inputs[%d].rules: rfc5424 needs at least one rule (as syslog.rules)", i))
			}
			sc := syslogd.Config{Listen: "127.0.0.1:0", MaxMessageBytes: 1 << 20, StructuredDataID: c.StructuredDataID, Rules: in.Rules}
			if err := sc.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("inputs[%d]: %w", i, err))
			}
		default:
			errs = append(errs, fmt.Errorf("inputs[%d].format: %q is not json, combined, sshd or rfc5424", i, in.Format))
		}
	}
	return errors.Join(errs...)
}
