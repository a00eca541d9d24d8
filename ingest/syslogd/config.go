// Package syslogd is custody ingest's syslog listener: RFC 5424 messages
// over TCP, framed per RFC 6587 (octet counting or LF), with TLS per
// RFC 5425. Configured rules turn each message into a v1 event with the
// agent's parsers (sshd, combined) or as a JSON event, which then takes
// the HTTP endpoint's path: validation, redaction, the Kafka sink.
package syslogd

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/custodylog/custody/internal/bytesize"
	"github.com/custodylog/custody/internal/keyerr"
	"github.com/custodylog/custody/internal/tlsconfig"
)

// Config is `ingest.syslog`. The listener is off while Listen is empty.
type Config struct {
	// Listen is the TCP address (RFC 5425's port is 6514).
	Listen string `yaml:"listen"`
	// TLS is required unless Listen is on loopback; client_ca_file makes
	// senders present a certificate (mTLS).
	TLS tlsconfig.Server `yaml:"tls"`
	// MaxMessageBytes bounds one message; longer ones are refused and
	// the connection goes on after them (RFC 5425 asks for at least 2 KiB).
	MaxMessageBytes bytesize.Size `yaml:"max_message_bytes"`
	// StructuredDataID is the SD-ID whose tenant and app parameters pick
	// a message's tenant and app (within its rule's tenants).
	StructuredDataID string `yaml:"structured_data_id"`
	Rules            []Rule `yaml:"rules"`
}

// Rule maps the messages it matches to events. The first matching rule
// wins; a message no rule matches is counted and dropped (logs of other
// programs are expected on a shared syslog stream).
type Rule struct {
	// AppName matches the message's APP-NAME exactly; empty matches any.
	AppName string `yaml:"app_name"`
	// Format is sshd (login events from OpenSSH's messages), combined
	// (connection events from nginx/Apache access log lines) or json (the
	// message is a v1 event, docs/EVENTS.md).
	Format string `yaml:"format"`
	// Tenant is the events' tenant unless the message's structured data
	// names one of Tenants.
	Tenant  string   `yaml:"tenant"`
	Tenants []string `yaml:"tenants"`
	// App is the events' app unless the structured data names one.
	App string `yaml:"app"`
}

// Defaults returns the listener off, with RFC-sized limits.
func Defaults() Config {
	return Config{MaxMessageBytes: 64 << 10, StructuredDataID: "custody@32473"}
}

var (
	sdID    = regexp.MustCompile(`^[!-~]{1,32}$`)
	appName = regexp.MustCompile(`^[!-~]{1,48}$`)
)

// Enabled reports whether the listener runs.
func (c Config) Enabled() bool { return c.Listen != "" }

// Validate reports each problem as "key: reason".
func (c *Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	var errs []error
	if err := c.TLS.Validate(c.Listen); err != nil {
		errs = append(errs, keyerr.Prefix("tls.", err))
	}
	if c.MaxMessageBytes < 2048 || c.MaxMessageBytes > 1<<20 {
		errs = append(errs, fmt.Errorf("max_message_bytes: %s is outside 2 KiB-1 MiB", c.MaxMessageBytes))
	}
	if !sdID.MatchString(c.StructuredDataID) {
		errs = append(errs, fmt.Errorf("structured_data_id: %q is not an SD-ID (1-32 printable ASCII characters)", c.StructuredDataID))
	}
	if len(c.Rules) == 0 {
		errs = append(errs, errors.New("rules: at least one is needed: which messages become which events"))
	}
	for i, r := range c.Rules {
		switch r.Format {
		case "sshd", "combined", "json":
		default:
			errs = append(errs, fmt.Errorf("rules[%d].format: %q is not sshd, combined or json", i, r.Format))
		}
		if r.AppName != "" && !appName.MatchString(r.AppName) {
			errs = append(errs, fmt.Errorf("rules[%d].app_name: %q is not an APP-NAME (1-48 printable ASCII characters)", i, r.AppName))
		}
		if r.Tenant == "" && len(r.Tenants) == 0 {
			errs = append(errs, fmt.Errorf("rules[%d]: tenant or tenants is required", i))
		}
	}
	return errors.Join(errs...)
}
