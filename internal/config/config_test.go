package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// clearEnv makes each test independent of the developer's stack env file.
func clearEnv(t *testing.T) {
	for _, k := range []string{"CUSTODY_KAFKA_BROKERS", "CUSTODY_S3_ENDPOINT", "CUSTODY_S3_BUCKET",
		"CUSTODY_S3_ACCESS_KEY", "CUSTODY_S3_SECRET_KEY", "CUSTODY_KAFKA_SASL_PASSWORD", "CUSTODY_KEYRING",
		"CUSTODY_INGEST_TOKEN_WEB_FRONTEND", "CUSTODY_INGEST_TOKEN_GIT_SERVER",
		"CUSTODY_KAFKA_TLS_CA_FILE", "CUSTODY_KAFKA_SASL_MECHANISM", "CUSTODY_KAFKA_SASL_USERNAME", "CUSTODY_S3_TLS_CA_FILE"} {
		t.Setenv(k, "")
	}
}

func TestValidConfig(t *testing.T) {
	clearEnv(t)
	c, err := Load(filepath.Join("testdata", "valid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Problems(All...); len(p) != 0 {
		t.Fatalf("Problems() = %q; want none", p)
	}
	if got := c.S3.SecretKey.Reveal(); got != "file-secret-key" {
		t.Errorf("s3.secret_key from file = %q; want file-secret-key", got)
	}
	if got := c.Ingest.Tokens[1].Token.Reveal(); got != "git-server-token-0123456789" {
		t.Errorf("ingest.tokens[1] from file = %q", got)
	}
	// Defaults survive for keys the file does not mention.
	if c.Retention.DefaultClass != "security" || c.Retention.Classes[0].Days != 365 {
		t.Errorf("retention defaults = %+v; want security/365", c.Retention)
	}
	if c.Events.MaxEventBytes != 16<<10 {
		t.Errorf("events.max_event_bytes default = %d; want 16384", c.Events.MaxEventBytes)
	}
}

func TestEnvOverrides(t *testing.T) {
	clearEnv(t)
	t.Setenv("CUSTODY_KAFKA_BROKERS", "10.0.0.1:9092,10.0.0.2:9092")
	t.Setenv("CUSTODY_S3_SECRET_KEY", "env-secret")
	t.Setenv("CUSTODY_INGEST_TOKEN_WEB_FRONTEND", "web-token-from-env-0123")
	c, err := Load(filepath.Join("testdata", "valid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(All...); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Kafka.Brokers, ","); got != "10.0.0.1:9092,10.0.0.2:9092" {
		t.Errorf("brokers = %s; want the env value", got)
	}
	if got := c.S3.SecretKey.Reveal(); got != "env-secret" {
		t.Errorf("env must win over secret_key_file: got %q", got)
	}
	if got := c.Ingest.Tokens[0].Token.Reveal(); got != "web-token-from-env-0123" {
		t.Errorf("env must win over inline token: got %q", got)
	}
	if c.Kafka.TLS.Enabled || c.S3.TLS.Enabled || c.Kafka.SASL.Mechanism != "" {
		t.Errorf("TLS or SASL on without their overrides: kafka tls %v sasl %q, s3 tls %v", c.Kafka.TLS.Enabled, c.Kafka.SASL.Mechanism, c.S3.TLS.Enabled)
	}
}

// The secure stack's overrides (scripts/stack up --secure) turn on TLS
// with the named CA for each connection, and SCRAM for Kafka.
func TestEnvOverridesTLSAndSASL(t *testing.T) {
	clearEnv(t)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CUSTODY_KAFKA_TLS_CA_FILE", ca)
	t.Setenv("CUSTODY_KAFKA_SASL_MECHANISM", "scram-sha-512")
	t.Setenv("CUSTODY_KAFKA_SASL_USERNAME", "custody-ingest")
	t.Setenv("CUSTODY_KAFKA_SASL_PASSWORD", "pw-from-env")
	t.Setenv("CUSTODY_S3_TLS_CA_FILE", ca)
	c, err := Load(filepath.Join("testdata", "valid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(All...); err != nil {
		t.Fatal(err)
	}
	k, s := c.Kafka, c.S3
	if !k.TLS.Enabled || k.TLS.CAFile != ca || k.SASL.Mechanism != "scram-sha-512" || k.SASL.Username != "custody-ingest" || k.SASL.Password.Reveal() != "pw-from-env" {
		t.Errorf("kafka = tls %v %q, sasl %q %q; want the overrides", k.TLS.Enabled, k.TLS.CAFile, k.SASL.Mechanism, k.SASL.Username)
	}
	if !s.TLS.Enabled || s.TLS.CAFile != ca {
		t.Errorf("s3 tls = %v %q; want on with %s", s.TLS.Enabled, s.TLS.CAFile, ca)
	}
}

func TestBrokenConfigs(t *testing.T) {
	clearEnv(t)
	// f loads a broken file and expects each of want to be one problem line,
	// in full, so that a message that stops naming its key fails the test.
	f := func(name string, loadErr string, want ...string) {
		t.Helper()
		c, err := Load(filepath.Join("testdata", name))
		if loadErr != "" {
			if err == nil || !strings.Contains(err.Error(), loadErr) {
				t.Errorf("Load(%s) error = %v; want it to contain %q", name, err, loadErr)
			}
			return
		}
		if err != nil {
			t.Fatalf("Load(%s): %v", name, err)
		}
		got := c.Problems(All...)
		have := map[string]bool{}
		for _, p := range got {
			have[p] = true
		}
		for _, w := range want {
			if !have[w] {
				t.Errorf("Problems(%s) lacks %q; got:\n  %s", name, w, strings.Join(got, "\n  "))
			}
		}
	}
	f("unknown-key.yaml", "line 3: field retenton not found")
	f("bad-size.yaml", `line 2: "sixteen kilobytes" is not a size`)
	f("missing-secret.yaml", "", "s3.secret_key_file: cannot read secret file: open testdata/does-not-exist.txt: no such file or directory")
	f("no-credentials.yaml", "",
		"s3.access_key: is required (set access_key_file or CUSTODY_S3_ACCESS_KEY)",
		"s3.secret_key: is required (set secret_key_file or CUSTODY_S3_SECRET_KEY)",
	)
	f("bad-values.yaml", "",
		`kafka.brokers[0]: "127.0.0.1" is not host:port`,
		`kafka.brokers[1]: "host:99999" has port "99999" outside 1-65535`,
		`kafka.topic: "events/all" has '/' at byte 6; only a-z A-Z 0-9 . _ - are allowed`,
		"kafka.dlq_topic: is required",
		"kafka.partitions: 0 is not a positive count",
		`kafka.compression: "brotli" is not one of zstd, lz4, snappy, gzip, none`,
		`kafka.sasl.mechanism: "kerberos" is not one of plain, scram-sha-256, scram-sha-512`,
		`s3.endpoint: "https://s3.example.com" must be host:port without a scheme; set tls.enabled for https`,
		`s3.bucket: "Custody_Archive" has 'C' at byte 0; only lowercase letters, digits, '-' and '.' are allowed`,
		"ingest.max_request_bytes: 1.0 KiB is smaller than events.max_event_bytes 16 KiB",
		"ingest.tokens[0].token: is 5 characters; at least 16 are required",
		"ingest.tokens[0].tenants: at least one tenant is required",
		"archive.flush_age: 10ms is below the 1s minimum (0: cut at the hour's close only)",
		"archive.hour_close_delay: 2h0m0s is outside 0-1h",
		`retention.mode: "strict" is not COMPLIANCE or GOVERNANCE`,
		"retention.classes[0].days: 0 is outside 1-3650",
		`retention.classes[1].name: "security" is already defined at classes[0]`,
		`retention.default_class: "legal" is not one of the classes`,
	)
}

func TestProblemsNeverRevealSecrets(t *testing.T) {
	clearEnv(t)
	c, err := Parse([]byte("ingest:\n  tokens:\n    - name: a\n      token: tok-abcdefghijklmnop\n      tenants: [x]\n    - name: b\n      token: tok-abcdefghijklmnop\n      tenants: [x]\n"), ".")
	if err != nil {
		t.Fatal(err)
	}
	ps := strings.Join(c.Problems(Ingest), "\n")
	if !strings.Contains(ps, "ingest.tokens[1].token: has the same value as tokens[0]") {
		t.Errorf("duplicate token not reported; problems:\n%s", ps)
	}
	if strings.Contains(ps, "tok-abcdefghijklmnop") {
		t.Errorf("problems reveal a token value:\n%s", ps)
	}
}

// Regression test: every command validated every section, so the git hook
// on a git server failed with "s3.access_key: is required". Each command
// resolves and checks only what it uses.
func TestCheckOnlyNamedSections(t *testing.T) {
	clearEnv(t)
	// A git server's file: Kafka and the agent's outbox, no S3 credentials,
	// no keyring, an ingest token file that does not exist on this host.
	c, err := Parse([]byte("s3:\n  secret_key_file: /absent/s3-secret\ningest:\n  tokens:\n    - name: web\n      token_file: /absent/token\n      tenants: [acme]\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(Kafka, Events, Agent, Retention); err != nil {
		t.Errorf("Check(kafka, events, agent, retention) = %v; want nil (s3 and ingest are not used)", err)
	}
	ps := strings.Join(c.Problems(S3), "\n")
	if !strings.Contains(ps, "s3.secret_key_file: cannot read secret file") {
		t.Errorf("Problems(s3) = %q; want the unreadable secret file", ps)
	}
	if strings.Contains(ps, "ingest.") {
		t.Errorf("Problems(s3) mentions ingest: %q", ps)
	}
	ps = strings.Join(c.Problems(Ingest), "\n")
	if !strings.Contains(ps, "ingest.tokens[0].token_file: cannot read secret file") {
		t.Errorf("Problems(ingest) = %q; want the unreadable token file", ps)
	}
}

func TestTokenClassesMustBeConfigured(t *testing.T) {
	clearEnv(t)
	c, err := Parse([]byte("ingest:\n  tokens:\n    - name: web\n      token: 0123456789abcdef-web\n      tenants: [acme]\n      kinds: [login, audit]\n      classes: [security, analytics]\n"), ".")
	if err != nil {
		t.Fatal(err)
	}
	ps := strings.Join(c.Problems(Ingest, Retention), "\n")
	for _, w := range []string{
		`ingest.tokens[0].kinds[1]: "audit" is not one of connection, login, source_change, activity, access_audit`,
		`ingest.tokens[0].classes[1]: "analytics" is not a retention class`,
	} {
		if !strings.Contains(ps, w) {
			t.Errorf("problems lack %q:\n%s", w, ps)
		}
	}
}

// Transport refusals (issue 14): each is one line naming the key.
func TestTransportRefusals(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "client.key")
	if err := os.WriteFile(key, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cert := filepath.Join(dir, "client.crt")
	if err := os.WriteFile(cert, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	doc := "kafka:\n  brokers: [kafka-1.example.net:9093]\n  sasl: {mechanism: scram-sha-512, username: u, password: p}\n" +
		"s3:\n  endpoint: s3.example.net:443\n  access_key: a\n  secret_key: b\n  tls: {enabled: true, insecure_skip_verify: true, cert_file: " + cert + ", key_file: " + key + "}\n"
	c, err := Parse([]byte(doc), dir)
	if err != nil {
		t.Fatal(err)
	}
	ps := strings.Join(c.Problems(Kafka, S3), "\n")
	for _, w := range []string{
		"kafka.sasl.mechanism: scram-sha-512 without tls.enabled would send credentials in clear; enable TLS (or set allow_insecure: true in a lab)",
		"s3.tls.insecure_skip_verify: is allowed only when every address is on loopback, and s3.example.net:443 is not",
		"s3.tls.key_file: " + key + " has mode 0644; a private key must not be readable by group or others (chmod 600)",
	} {
		if !strings.Contains(ps, w) {
			t.Errorf("problems lack %q:\n%s", w, ps)
		}
	}
	// In a lab: allowed, and a warning for every start.
	c, err = Parse([]byte("kafka:\n  brokers: [127.0.0.1:9092]\n  allow_insecure: true\n  sasl: {mechanism: plain, username: u, password: p}\ns3:\n  endpoint: 127.0.0.1:9000\n  access_key: a\n  secret_key: b\n  tls: {enabled: true, insecure_skip_verify: true}\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if ps := c.Problems(Kafka, S3); len(ps) != 0 {
		t.Errorf("lab setup on loopback refused: %q", ps)
	}
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "kafka.allow_insecure: SASL plain credentials cross the network in clear") {
		t.Errorf("Warnings() = %q; want the insecure SASL named", w)
	}
	// Ingest: plain HTTP only on loopback, since requests carry tokens.
	c, err = Parse([]byte("ingest:\n  listen: 0.0.0.0:8080\n  tokens: [{name: web, token: 0123456789abcdef-web, tenants: [acme]}]\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if ps := strings.Join(c.Problems(Ingest), "\n"); !strings.Contains(ps, "ingest.tls.cert_file: listening on 0.0.0.0:8080, which is not loopback, needs TLS (cert_file and key_file)") {
		t.Errorf("plain HTTP on 0.0.0.0: %q", ps)
	}
	for _, l := range []string{"127.0.0.1:8080", "[::1]:8080", "localhost:8080"} {
		c, err = Parse([]byte("ingest:\n  listen: \""+l+"\"\n  tokens: [{name: web, token: 0123456789abcdef-web, tenants: [acme]}]\n"), dir)
		if err != nil {
			t.Fatal(err)
		}
		if ps := c.Problems(Ingest); len(ps) != 0 {
			t.Errorf("plain HTTP on %s refused: %q", l, ps)
		}
	}
	// An unreadable file names itself.
	c, err = Parse([]byte("s3:\n  access_key: a\n  secret_key: b\n  tls: {enabled: true, ca_file: /absent/ca.pem}\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if ps := strings.Join(c.Problems(S3), "\n"); !strings.Contains(ps, "s3.tls.ca_file: cannot read /absent/ca.pem: no such file or directory") {
		t.Errorf("unreadable ca_file: %q", ps)
	}
}
