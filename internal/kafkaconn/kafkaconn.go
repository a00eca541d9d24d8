// Package kafkaconn holds the Kafka connection configuration shared by the
// producing side (ingest) and the consuming side (pipeline), and builds
// kafka-go dialers and transports, and franz-go producer options, from it.
package kafkaconn

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
	"github.com/twmb/franz-go/pkg/kgo"
	kplain "github.com/twmb/franz-go/pkg/sasl/plain"
	kscram "github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/custodylog/custody/internal/keyerr"
	"github.com/custodylog/custody/internal/secret"
	"github.com/custodylog/custody/internal/tlsconfig"
)

// Config is the `kafka` section.
type Config struct {
	Brokers []string `yaml:"brokers"`
	// Topic receives every event; DLQTopic receives records the archiver
	// cannot decode, with the reason in headers.
	Topic    string `yaml:"topic"`
	DLQTopic string `yaml:"dlq_topic"`
	// Partitions and ReplicationFactor are used when Custody creates a
	// missing topic; an existing topic is never altered.
	Partitions        int              `yaml:"partitions"`
	ReplicationFactor int              `yaml:"replication_factor"`
	ClientID          string           `yaml:"client_id"`
	DialTimeout       time.Duration    `yaml:"dial_timeout"`
	TLS               tlsconfig.Config `yaml:"tls"`
	SASL              SASL             `yaml:"sasl"`
	// Compression is the codec of the event producers' batches (ingest,
	// agent, send, hook, normalize), as the Java producer's
	// compression.type: zstd (the default: the smallest topic), lz4,
	// snappy, gzip or none; empty is zstd. Consumers read every codec.
	Compression string `yaml:"compression"`
	// AllowInsecure permits SASL without TLS, which sends the password
	// (PLAIN) or a replayable exchange (SCRAM) in clear; every start then
	// logs a warning. For lab setups only.
	AllowInsecure bool `yaml:"allow_insecure"`
}

// SASL is the `kafka.sasl` section. The password may come from
// CUSTODY_KAFKA_SASL_PASSWORD or password_file instead of the YAML.
type SASL struct {
	// Mechanism is empty (no SASL), "plain", "scram-sha-256" or "scram-sha-512".
	Mechanism    string        `yaml:"mechanism"`
	Username     string        `yaml:"username"`
	Password     secret.String `yaml:"password"`
	PasswordFile string        `yaml:"password_file"`
}

// Defaults returns the configuration for the local stack.
func Defaults() Config {
	return Config{
		Brokers:           []string{"127.0.0.1:9092"},
		Topic:             "custody.events",
		DLQTopic:          "custody.events.dlq",
		Partitions:        6,
		ReplicationFactor: 1,
		ClientID:          "custody",
		DialTimeout:       10 * time.Second,
		Compression:       "zstd",
	}
}

// Resolve reads secrets from the environment or files and resolves paths.
func (c *Config) Resolve(baseDir string) error {
	c.TLS.ResolvePaths(baseDir)
	p, err := secret.Resolve(c.SASL.Password, c.SASL.PasswordFile, "CUSTODY_KAFKA_SASL_PASSWORD", baseDir)
	if err != nil {
		return fmt.Errorf("sasl.password_file: %w", err)
	}
	c.SASL.Password = p
	return nil
}

// Validate reports each problem as "key: reason".
func (c *Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: at least one broker is required"))
	}
	for i, b := range c.Brokers {
		if err := validateHostPort(b); err != nil {
			errs = append(errs, fmt.Errorf("brokers[%d]: %q %w", i, b, err))
		}
	}
	if err := validateTopic(c.Topic); err != nil {
		errs = append(errs, fmt.Errorf("topic: %w", err))
	}
	if err := validateTopic(c.DLQTopic); err != nil {
		errs = append(errs, fmt.Errorf("dlq_topic: %w", err))
	}
	if c.Topic != "" && c.Topic == c.DLQTopic {
		errs = append(errs, errors.New("dlq_topic: must differ from topic"))
	}
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("partitions: %d is not a positive count", c.Partitions))
	}
	if c.ReplicationFactor < 1 {
		errs = append(errs, fmt.Errorf("replication_factor: %d is not a positive count", c.ReplicationFactor))
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("dial_timeout: %s is not a positive duration", c.DialTimeout))
	}
	if _, ok := codecs[c.Compression]; !ok && c.Compression != "" {
		errs = append(errs, fmt.Errorf("compression: %q is not one of zstd, lz4, snappy, gzip, none", c.Compression))
	}
	if err := c.TLS.Validate(c.Brokers...); err != nil {
		errs = append(errs, keyerr.Prefix("tls.", err))
	}
	if c.SASL.Mechanism != "" && !c.TLS.Enabled && !c.AllowInsecure {
		errs = append(errs, fmt.Errorf("sasl.mechanism: %s without tls.enabled would send credentials in clear; enable TLS (or set allow_insecure: true in a lab)", c.SASL.Mechanism))
	}
	switch c.SASL.Mechanism {
	case "":
		if c.SASL.Username != "" {
			errs = append(errs, errors.New("sasl.mechanism: username is set but mechanism is empty; use plain, scram-sha-256 or scram-sha-512"))
		}
	case "plain", "scram-sha-256", "scram-sha-512":
		if c.SASL.Username == "" {
			errs = append(errs, errors.New("sasl.username: required when sasl.mechanism is set"))
		}
		if c.SASL.Password == "" {
			errs = append(errs, errors.New("sasl.password: required when sasl.mechanism is set (set password_file or CUSTODY_KAFKA_SASL_PASSWORD)"))
		}
	default:
		errs = append(errs, fmt.Errorf("sasl.mechanism: %q is not one of plain, scram-sha-256, scram-sha-512", c.SASL.Mechanism))
	}
	return errors.Join(errs...)
}

// Warnings are the insecure settings a command logs at every start.
func (c *Config) Warnings() []string {
	if c.AllowInsecure && c.SASL.Mechanism != "" && !c.TLS.Enabled {
		return []string{fmt.Sprintf("kafka.allow_insecure: SASL %s credentials cross the network in clear", c.SASL.Mechanism)}
	}
	return nil
}

func (c *Config) mechanism() (sasl.Mechanism, error) {
	switch c.SASL.Mechanism {
	case "":
		return nil, nil
	case "plain":
		return plain.Mechanism{Username: c.SASL.Username, Password: c.SASL.Password.Reveal()}, nil
	case "scram-sha-256":
		return scram.Mechanism(scram.SHA256, c.SASL.Username, c.SASL.Password.Reveal())
	case "scram-sha-512":
		return scram.Mechanism(scram.SHA512, c.SASL.Username, c.SASL.Password.Reveal())
	}
	return nil, fmt.Errorf("unknown sasl mechanism %q", c.SASL.Mechanism)
}

// Dialer builds a dialer for readers and admin connections.
func (c *Config) Dialer() (*kafka.Dialer, error) {
	tc, err := c.TLS.Build()
	if err != nil {
		return nil, err
	}
	m, err := c.mechanism()
	if err != nil {
		return nil, err
	}
	d := &kafka.Dialer{ClientID: c.ClientID, Timeout: c.DialTimeout, DualStack: true, SASLMechanism: m}
	if tc != nil {
		d.DialFunc = dialTLS(tc, c.DialTimeout)
	}
	return d, nil
}

// Transport builds a transport for kafka.Writer and kafka.Client.
func (c *Config) Transport() (*kafka.Transport, error) {
	tc, err := c.TLS.Build()
	if err != nil {
		return nil, err
	}
	m, err := c.mechanism()
	if err != nil {
		return nil, err
	}
	tr := &kafka.Transport{ClientID: c.ClientID, DialTimeout: c.DialTimeout, SASL: m}
	if tc != nil {
		tr.Dial = dialTLS(tc, c.DialTimeout)
	}
	return tr, nil
}

// ProducerOpts are the franz-go client options for this configuration:
// the seed brokers, the client ID, the same TLS dial (dialTLS) and SASL.
// The producing side uses franz-go for its idempotent producer, which
// kafka-go lacks (segmentio/kafka-go#797): a produce retried after a
// leader failover is then deduplicated by the broker, not stored twice.
func (c *Config) ProducerOpts() ([]kgo.Opt, error) {
	tc, err := c.TLS.Build()
	if err != nil {
		return nil, err
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ClientID(c.ClientID), kgo.DialTimeout(c.DialTimeout)}
	if tc != nil {
		opts = append(opts, kgo.Dialer(dialTLS(tc, c.DialTimeout)))
	}
	user, pass := c.SASL.Username, c.SASL.Password.Reveal()
	switch c.SASL.Mechanism {
	case "":
	case "plain":
		opts = append(opts, kgo.SASL(kplain.Auth{User: user, Pass: pass}.AsMechanism()))
	case "scram-sha-256":
		opts = append(opts, kgo.SASL(kscram.Auth{User: user, Pass: pass}.AsSha256Mechanism()))
	case "scram-sha-512":
		opts = append(opts, kgo.SASL(kscram.Auth{User: user, Pass: pass}.AsSha512Mechanism()))
	default:
		return nil, fmt.Errorf("unknown sasl mechanism %q", c.SASL.Mechanism)
	}
	return opts, nil
}

// codecs are the batch codecs kafka.compression names.
var codecs = map[string]func() kgo.CompressionCodec{
	"zstd":   kgo.ZstdCompression,
	"lz4":    kgo.Lz4Compression,
	"snappy": kgo.SnappyCompression,
	"gzip":   kgo.GzipCompression,
	"none":   kgo.NoCompression,
}

// ProducerCompression is the producer option for kafka.compression (zstd
// when unset, so a Config built in code compresses as the default does).
func (c *Config) ProducerCompression() kgo.Opt {
	codec, ok := codecs[c.Compression]
	if !ok {
		codec = kgo.ZstdCompression
	}
	return kgo.ProducerBatchCompression(codec())
}

// dialTLS connects and completes the TLS handshake itself (kafka-go's own
// TLS would leave it to the first request), so that a listener that is not
// TLS or that drops the connection is reported as such rather than as a
// bare EOF, and a certificate problem names the broker.
func dialTLS(tc *tls.Config, timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cfg := tc
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			cfg = tc.Clone()
			cfg.ServerName = host
		}
		conn := tls.Client(raw, cfg)
		if err := conn.HandshakeContext(ctx); err != nil {
			raw.Close()
			var rh tls.RecordHeaderError
			switch {
			case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
				return nil, fmt.Errorf("broker %s closed the connection during the TLS handshake (is its listener TLS?): %w", addr, err)
			case errors.As(err, &rh):
				return nil, fmt.Errorf("broker %s does not speak TLS: %w", addr, err)
			}
			return nil, fmt.Errorf("TLS handshake with broker %s failed: %w", addr, err)
		}
		return conn, nil
	}
}

func validateHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("is not host:port")
	}
	if host == "" {
		return errors.New("has an empty host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("has port %q outside 1-65535", port)
	}
	return nil
}

// validateTopic applies Kafka's own rule: 1-249 characters of [a-zA-Z0-9._-].
func validateTopic(t string) error {
	if t == "" {
		return errors.New("is required")
	}
	if len(t) > 249 {
		return fmt.Errorf("%q is longer than 249 characters", t)
	}
	if t == "." || t == ".." {
		return fmt.Errorf("%q is not a legal topic name", t)
	}
	if i := strings.IndexFunc(t, func(r rune) bool {
		return !(r == '.' || r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}); i >= 0 {
		return fmt.Errorf("%q has %q at byte %d; only a-z A-Z 0-9 . _ - are allowed", t, t[i], i)
	}
	return nil
}

// Client is a process's one administrative connection to Kafka: topic
// creation and readiness probes share its transport (and so its pooled
// broker connections) for the life of the process. A kafka-go Transport
// keeps goroutines per broker connection, so building one per probe, as
// an earlier version did, leaked two goroutines a call. Safe for
// concurrent use; Close once, after the last call.
type Client struct {
	cfg Config
	tr  *kafka.Transport
	cl  *kafka.Client
}

// NewClient builds the client; it does not connect until first used.
func (c *Config) NewClient() (*Client, error) {
	tr, err := c.Transport()
	if err != nil {
		return nil, err
	}
	return &Client{cfg: *c, tr: tr, cl: &kafka.Client{Addr: kafka.TCP(c.Brokers...), Transport: tr, Timeout: c.DialTimeout}}, nil
}

// Transport is the client's transport, for writers of the same process.
func (c *Client) Transport() *kafka.Transport { return c.tr }

// Config is the configuration the client was built from.
func (c *Client) Config() Config { return c.cfg }

// Close closes the pooled connections.
func (c *Client) Close() { c.tr.CloseIdleConnections() }

// EnsureTopic creates topic with the configured partitions and replication
// factor if it does not exist. An existing topic is left as it is. It
// returns only once the topic's metadata shows a leader for every
// partition, so a produce right after it does not meet "unknown topic".
func (c *Client) EnsureTopic(ctx context.Context, topic string) error {
	// A topic that is there is used as it is, without asking to create it:
	// a principal without the Create right (the ACLs of docs/DEPLOY.md) is
	// refused CreateTopics even for a topic that exists.
	if c.topicReady(ctx, topic) == nil {
		return nil
	}
	resp, err := c.cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: c.cfg.Partitions, ReplicationFactor: c.cfg.ReplicationFactor,
	}}})
	if err != nil {
		return fmt.Errorf("cannot create topic %s: %w", topic, err)
	}
	if err := resp.Errors[topic]; errors.Is(err, kafka.TopicAuthorizationFailed) || errors.Is(err, kafka.ClusterAuthorizationFailed) {
		return fmt.Errorf("topic %s is missing or not visible to this principal, which may not create it: create the topic, or grant Describe on it (docs/DEPLOY.md): %w", topic, err)
	} else if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("cannot create topic %s: %w", topic, err)
	}
	for {
		err := c.topicReady(ctx, topic)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topic %s created but not ready: %w", topic, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Ping checks that a broker answers now (an ApiVersions round trip, never
// served from a cache) and that the events topic exists with a leader for
// every partition: what a producer needs to be served.
func (c *Client) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.cl.ApiVersions(ctx, &kafka.ApiVersionsRequest{}); err != nil {
		return fmt.Errorf("kafka %s unreachable: %w", strings.Join(c.cfg.Brokers, ","), err)
	}
	return c.topicReady(ctx, c.cfg.Topic)
}

// topicReady reads the topic's metadata. The transport answers metadata
// requests from its cache, refreshed every few seconds and at once after
// a topic is created through it, so this costs no round trip.
func (c *Client) topicReady(ctx context.Context, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	md, err := c.cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return fmt.Errorf("kafka %s unreachable: %w", strings.Join(c.cfg.Brokers, ","), err)
	}
	for _, t := range md.Topics {
		if t.Error != nil {
			return fmt.Errorf("topic %s: %w", t.Name, t.Error)
		}
		if len(t.Partitions) == 0 {
			return fmt.Errorf("topic %s has no partitions yet", t.Name)
		}
		for _, p := range t.Partitions {
			if p.Error != nil || p.Leader.Host == "" {
				return fmt.Errorf("topic %s partition %d has no leader yet", t.Name, p.ID)
			}
		}
	}
	return nil
}

// ReadSince calls fn with the value of every record of topic written at or
// after since (by the record's timestamp index), partition by partition,
// up to the end each partition had when ReadSince began: a bounded read of
// what is recent, for readers that must see events not yet archived. fn
// must not keep value.
func (c *Client) ReadSince(ctx context.Context, topic string, since time.Time, fn func(value []byte) error) error {
	offs, err := c.offsets(ctx, topic, func(p int) kafka.OffsetRequest { return kafka.TimeOffsetOf(p, since) })
	if err != nil {
		return err
	}
	for _, po := range offs {
		start, end := int64(-1), po.LastOffset
		for off := range po.Offsets {
			if off >= 0 && (start < 0 || off < start) {
				start = off
			}
		}
		if start < 0 || start >= end {
			continue // nothing written since
		}
		err := c.readPartition(ctx, topic, po.Partition, start, end, func(r Record) error {
			if r.Value == nil {
				return nil
			}
			return fn(r.Value)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// offsets lists, for every partition of topic, the end offset and the
// offset that first asks for (the first offset, or one by time).
func (c *Client) offsets(ctx context.Context, topic string, first func(partition int) kafka.OffsetRequest) ([]kafka.PartitionOffsets, error) {
	md, err := c.cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("cannot read the metadata of %s: %w", topic, err)
	}
	var reqs []kafka.OffsetRequest
	for _, t := range md.Topics {
		if t.Error != nil {
			return nil, fmt.Errorf("topic %s: %w", topic, t.Error)
		}
		for _, p := range t.Partitions {
			reqs = append(reqs, first(p.ID), kafka.LastOffsetOf(p.ID))
		}
	}
	// One request per kind of offset: the answer keys offsets by partition.
	lo, err := c.cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("cannot list the offsets of %s: %w", topic, err)
	}
	for _, po := range lo.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("topic %s partition %d: %w", topic, po.Partition, po.Error)
		}
	}
	return lo.Topics[topic], nil
}

// Record is one Kafka record as Scan passes it.
type Record struct {
	Partition int
	Offset    int64
	Time      time.Time
	Key       []byte
	Value     []byte
	Headers   []kafka.Header
}

// Header returns the value of the record's first header named key.
func (r Record) Header(key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Partitions returns each partition of topic with its first and end
// offsets (the end is the offset the next record will get).
func (c *Client) Partitions(ctx context.Context, topic string) (map[int][2]int64, error) {
	offs, err := c.offsets(ctx, topic, kafka.FirstOffsetOf)
	if err != nil {
		return nil, err
	}
	out := map[int][2]int64{}
	for _, po := range offs {
		out[po.Partition] = [2]int64{po.FirstOffset, po.LastOffset}
	}
	return out, nil
}

// Scan calls fn with every record of partition from offset start up to
// end (exclusive), in offset order; offsets the log no longer holds are
// skipped.
func (c *Client) Scan(ctx context.Context, topic string, partition int, start, end int64, fn func(Record) error) error {
	return c.readPartition(ctx, topic, partition, start, end, fn)
}

func (c *Client) readPartition(ctx context.Context, topic string, partition int, start, end int64, fn func(Record) error) error {
	for off := start; off < end; {
		resp, err := c.cl.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: partition, Offset: off, MinBytes: 1, MaxBytes: 4 << 20, MaxWait: 100 * time.Millisecond})
		if err != nil {
			return fmt.Errorf("cannot fetch %s/%d at %d: %w", topic, partition, off, err)
		}
		if resp.Error != nil {
			return fmt.Errorf("cannot fetch %s/%d at %d: %w", topic, partition, off, resp.Error)
		}
		next := off
		for {
			r, err := resp.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("cannot read %s/%d: %w", topic, partition, err)
			}
			if r.Offset < off || r.Offset >= end {
				continue
			}
			next = r.Offset + 1
			rec := Record{Partition: partition, Offset: r.Offset, Time: r.Time, Headers: r.Headers}
			if r.Key != nil {
				if rec.Key, err = io.ReadAll(r.Key); err != nil {
					return err
				}
			}
			if r.Value != nil {
				if rec.Value, err = io.ReadAll(r.Value); err != nil {
					return err
				}
			}
			if err := fn(rec); err != nil {
				return err
			}
		}
		if next == off {
			break // no progress: the rest is not readable now
		}
		off = next
	}
	return nil
}

// Commit is a consumer group's committed position on one partition.
type Commit struct {
	Topic     string
	Partition int
	Offset    int64
	Metadata  string
}

// Commits returns every position group has committed, on every topic, in
// (topic, partition) order.
func (c *Client) Commits(ctx context.Context, group string) ([]Commit, error) {
	resp, err := c.cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group}) // no topics: all of them
	if err == nil {
		err = resp.Error
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read the committed offsets of group %s: %w", group, err)
	}
	var out []Commit
	for topic, ps := range resp.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return nil, fmt.Errorf("cannot read the committed offset of group %s on %s/%d: %w", group, topic, p.Partition, p.Error)
			}
			if p.CommittedOffset >= 0 {
				out = append(out, Commit{Topic: topic, Partition: p.Partition, Offset: p.CommittedOffset, Metadata: p.Metadata})
			}
		}
	}
	slices.SortFunc(out, func(a, b Commit) int {
		return cmp.Or(strings.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return out, nil
}

// Commit records offset as group's committed offset of topic/partition,
// as a standalone consumer does (no group membership, generation -1):
// for tools that consume alone, such as custody dlq replay. The group must
// have no active members.
func (c *Client) Commit(ctx context.Context, group, topic string, partition int, offset int64) error {
	resp, err := c.cl.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1,
		Topics: map[string][]kafka.OffsetCommit{topic: {{Partition: partition, Offset: offset}}}})
	if err == nil {
		for _, p := range resp.Topics[topic] {
			if p.Error != nil {
				err = p.Error
			}
		}
	}
	if err != nil {
		return fmt.Errorf("cannot commit offset %d of %s/%d for group %s: %w", offset, topic, partition, group, err)
	}
	return nil
}
