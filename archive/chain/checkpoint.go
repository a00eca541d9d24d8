// Package chain is the archive's proof of completeness: per Kafka
// partition, a hash-linked sequence of signed checkpoints, each accounting
// for every offset of an interval (stored in a listed segment, sent to the
// dead-letter topic, or never delivered by Kafka) and listing every segment
// stored since the previous one with the SHA-256 of its object. The
// archiver writes them (pipeline); `custody verify` checks them against the
// bucket. docs/CHAIN.md is the specification.
package chain

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/internal/signed"
)

// Label is the signature domain of a checkpoint (internal/signed).
const Label = "custody checkpoint v1"

// Prefix is where checkpoints live in the bucket (store.Init gives it its
// lifecycle rule).
const Prefix = store.ChainPrefix

// Checkpoint is one link of a partition's chain.
type Checkpoint struct {
	V         int    `json:"v"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Seq       uint64 `json:"seq"`
	// Prev is the hex SHA-256 of the previous checkpoint's object bytes;
	// empty for seq 0, the start of the chain.
	Prev string `json:"prev"`
	// From and Offset bound the interval [From, Offset) this checkpoint
	// accounts for; Offset is the consumer group's committed offset that
	// follows it, and the next checkpoint's From.
	From   int64 `json:"from"`
	Offset int64 `json:"offset"`
	// Counts is the number of records in [From, Offset) per segment key,
	// "class/kind/yyyymmddhh".
	Counts map[string]int64 `json:"counts"`
	// DeadLetters are the offsets in [From, Offset) sent to the
	// dead-letter topic; Absent those Kafka never delivered (transaction
	// markers, compaction). Counts, DeadLetters and Absent add up to
	// Offset - From.
	DeadLetters []Range `json:"dead_letters"`
	Absent      []Range `json:"absent"`
	// Segments are the segments stored (or found stored, after a crash)
	// since the previous checkpoint.
	Segments   []Segment `json:"segments"`
	Archiver   string    `json:"archiver"`
	Generation int32     `json:"generation"`
	Time       time.Time `json:"time"`
}

// Segment is a stored segment as the chain records it.
type Segment struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"` // of the object's bytes, hex
	First  int64  `json:"first"`
	Last   int64  `json:"last"`
	Count  int64  `json:"count"`
}

// Range is an inclusive range of offsets, [First, Last]; JSON [first, last].
type Range struct{ First, Last int64 }

// Len is the number of offsets in r.
func (r Range) Len() int64 { return r.Last - r.First + 1 }

func (r Range) MarshalJSON() ([]byte, error) {
	return []byte("[" + strconv.FormatInt(r.First, 10) + "," + strconv.FormatInt(r.Last, 10) + "]"), nil
}

func (r *Range) UnmarshalJSON(b []byte) error {
	var a []int64
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	if len(a) != 2 || a[0] > a[1] || a[0] < 0 {
		return fmt.Errorf("range %s is not [first, last] with 0 <= first <= last", b)
	}
	r.First, r.Last = a[0], a[1]
	return nil
}

// Name is the object key of checkpoint seq of a partition:
// _chain/<topic>/<partition>/<seq, 20 digits>.json. Fixed-width sequence
// numbers list in chain order.
func Name(topic string, partition int32, seq uint64) string {
	return fmt.Sprintf("%s%s/%d/%020d.json", Prefix, topic, partition, seq)
}

// PartitionPrefix is the prefix of one partition's checkpoints.
func PartitionPrefix(topic string, partition int32) string {
	return fmt.Sprintf("%s%s/%d/", Prefix, topic, partition)
}

// ParseName returns the topic, partition and sequence number a checkpoint
// object name encodes.
func ParseName(name string) (topic string, partition int32, seq uint64, err error) {
	rest, ok := strings.CutPrefix(name, Prefix)
	if !ok {
		return "", 0, 0, fmt.Errorf("checkpoint name %q does not start with %s", name, Prefix)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[0] == "" {
		return "", 0, 0, fmt.Errorf("checkpoint name %q is not %s<topic>/<partition>/<seq>.json", name, Prefix)
	}
	p, err := strconv.ParseInt(parts[1], 10, 32)
	if err != nil || p < 0 || strconv.FormatInt(p, 10) != parts[1] {
		return "", 0, 0, fmt.Errorf("checkpoint name %q: partition %q is not a number", name, parts[1])
	}
	digits, ok := strings.CutSuffix(parts[2], ".json")
	if !ok || len(digits) != 20 {
		return "", 0, 0, fmt.Errorf("checkpoint name %q: sequence %q is not 20 digits and .json", name, parts[2])
	}
	s, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return "", 0, 0, fmt.Errorf("checkpoint name %q: sequence: %v", name, err)
	}
	return parts[0], int32(p), s, nil
}

// Hash is the hex SHA-256 of a checkpoint object's bytes: what the next
// checkpoint's Prev holds.
func Hash(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Encode signs c. The result is the object's bytes. Empty lists and maps
// are written as [] and {}, never null.
func Encode(c *Checkpoint, sk keyring.SigningKey) ([]byte, error) {
	cc := *c
	if cc.Counts == nil {
		cc.Counts = map[string]int64{}
	}
	for _, rs := range []*[]Range{&cc.DeadLetters, &cc.Absent} {
		if *rs == nil {
			*rs = []Range{}
		}
	}
	if cc.Segments == nil {
		cc.Segments = []Segment{}
	}
	return signed.Encode(Label, &cc, sk)
}

// ErrInvalid marks a checkpoint that is not well formed; ErrSignature one
// whose signature is missing, by an unknown signer, or does not verify.
var (
	ErrInvalid   = errors.New("invalid checkpoint")
	ErrSignature = errors.New("checkpoint signature does not verify")
)

// Decode checks b's signature against the trusted signers, then the
// checkpoint's own consistency. It returns the checkpoint and its signer.
func Decode(b []byte, trusted *keyring.PublicKeyring) (*Checkpoint, string, error) {
	var c Checkpoint
	who, err := signed.Decode(b, Label, trusted, &c)
	if errors.Is(err, signed.ErrSignature) {
		return nil, "", fmt.Errorf("%w: %v", ErrSignature, err)
	}
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := c.Validate(); err != nil {
		return nil, who, err
	}
	return &c, who, nil
}

// Validate checks what a checkpoint says about itself: version, bounds,
// that its counts, dead letters and absent offsets add up to its interval,
// and that its segments are well formed.
func (c *Checkpoint) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s/%d seq %d: %s", ErrInvalid, c.Topic, c.Partition, c.Seq, fmt.Sprintf(format, args...))
	}
	switch {
	case c.V != 1:
		return bad("version %d is not 1", c.V)
	case c.Topic == "" || c.Partition < 0:
		return bad("no topic or a negative partition")
	case (c.Seq == 0) != (c.Prev == ""):
		return bad("prev %q: seq 0 and only seq 0 has no previous checkpoint", c.Prev)
	case c.Prev != "" && !isHexSHA256(c.Prev):
		return bad("prev %q is not a hex SHA-256", c.Prev)
	case c.From < 0 || c.Offset < c.From:
		return bad("interval [%d, %d) is not ordered", c.From, c.Offset)
	case c.Time.IsZero():
		return bad("no time")
	}
	var n int64
	for k, v := range c.Counts {
		if v <= 0 {
			return bad("count %d for %s", v, k)
		}
		n += v
	}
	for _, rs := range [][]Range{c.DeadLetters, c.Absent} {
		for _, r := range rs {
			if r.First < c.From || r.Last >= c.Offset {
				return bad("range [%d, %d] is outside [%d, %d)", r.First, r.Last, c.From, c.Offset)
			}
			n += r.Len()
		}
	}
	if n != c.Offset-c.From {
		return bad("counts, dead letters and absent offsets add up to %d; the interval [%d, %d) holds %d", n, c.From, c.Offset, c.Offset-c.From)
	}
	for _, s := range c.Segments {
		if s.Name == "" || !isHexSHA256(s.SHA256) || s.First < 0 || s.Last < s.First || s.Count < 1 || s.Count > s.Last-s.First+1 {
			return bad("segment %q: name, sha256, first %d, last %d or count %d is malformed", s.Name, s.First, s.Last, s.Count)
		}
	}
	return nil
}

func isHexSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// HintPrefix starts the word of an offset commit's metadata that names the
// partition's chain head: "chain=<seq>:<sha256 hex>" (docs/CHAIN.md §3).
const HintPrefix = "chain="

// Hint is the metadata word naming checkpoint seq, whose object hashes to
// sha (hex).
func Hint(seq uint64, sha string) string {
	return HintPrefix + strconv.FormatUint(seq, 10) + ":" + sha
}

// ParseHint finds the chain head named in commit metadata (space-separated
// words); ok is false if there is none or it is malformed.
func ParseHint(md string) (seq uint64, sha string, ok bool) {
	for _, f := range strings.Fields(md) {
		v, found := strings.CutPrefix(f, HintPrefix)
		if !found {
			continue
		}
		s, h, found := strings.Cut(v, ":")
		n, err := strconv.ParseUint(s, 10, 64)
		if !found || err != nil || len(h) != 64 {
			return 0, "", false
		}
		return n, h, true
	}
	return 0, "", false
}
