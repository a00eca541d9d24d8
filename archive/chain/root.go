package chain

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/internal/signed"
)

// RootLabel is the signature domain of a daily root.
const RootLabel = "custody root v1"

// RootPrefix is where daily roots live.
const RootPrefix = "_roots/"

// Root is a day's commitment to every partition's chain: the head each
// chain had at the end of the day (UTC), combined into one Merkle root,
// and linked to the previous day's root. Published outside the system, a
// root's hash is a trust anchor: no chain it covers can be cut short or
// rewritten without changing it.
type Root struct {
	V    int    `json:"v"`
	Date string `json:"date"` // yyyy-mm-dd, UTC
	// Prev is the hex SHA-256 of the previous root object's bytes ("" for
	// the first).
	Prev   string `json:"prev"`
	Leaves []Leaf `json:"leaves"`
	// Merkle is the hex Merkle root over the leaves (docs/CHAIN.md §5).
	Merkle string    `json:"merkle"`
	Time   time.Time `json:"time"`
}

// Leaf is one partition's chain head at the end of a day.
type Leaf struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Seq       uint64 `json:"seq"`
	SHA256    string `json:"sha256"` // of the checkpoint object's bytes
}

func (l Leaf) bytes() []byte {
	return fmt.Appendf(nil, "%s\x00%d\x00%d\x00%s", l.Topic, l.Partition, l.Seq, l.SHA256)
}

// MerkleRoot is the RFC 6962 Merkle tree hash of the leaves, in the order
// given: a leaf hashes as SHA-256(0x00 ‖ topic 0x00 partition 0x00 seq 0x00
// sha256), a node as SHA-256(0x01 ‖ left ‖ right), the empty tree as
// SHA-256 of nothing.
func MerkleRoot(leaves []Leaf) string {
	var hash func(ls []Leaf) []byte
	hash = func(ls []Leaf) []byte {
		h := sha256.New()
		switch len(ls) {
		case 0:
		case 1:
			h.Write([]byte{0})
			h.Write(ls[0].bytes())
		default:
			k := 1
			for k*2 < len(ls) {
				k *= 2
			}
			h.Write([]byte{1})
			h.Write(hash(ls[:k]))
			h.Write(hash(ls[k:]))
		}
		return h.Sum(nil)
	}
	return hex.EncodeToString(hash(leaves))
}

// RootName is the object key of a day's root.
func RootName(day time.Time) string {
	return RootPrefix + day.UTC().Format("2006-01-02") + ".json"
}

// DecodeRoot checks a root's signature and its Merkle root.
func DecodeRoot(b []byte, trusted *keyring.PublicKeyring) (*Root, error) {
	var r Root
	_, err := signed.Decode(b, RootLabel, trusted, &r)
	if errors.Is(err, signed.ErrSignature) {
		return nil, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := time.Parse("2006-01-02", r.Date); r.V != 1 || err != nil || (r.Prev != "" && !isHexSHA256(r.Prev)) {
		return nil, fmt.Errorf("%w: root %q: version, date or prev is malformed", ErrInvalid, r.Date)
	}
	if MerkleRoot(r.Leaves) != r.Merkle {
		return nil, fmt.Errorf("%w: root %s: the Merkle root does not match its leaves", ErrInvalid, r.Date)
	}
	return &r, nil
}

// writer is what writing roots needs from the bucket.
type writer interface {
	objects
	Put(ctx context.Context, name string, r io.Reader, size int64, lock store.Lock) error
}

// link is a checkpoint as roots need it.
type link struct {
	seq  uint64
	hash string
	time time.Time
}

// readChains reads every trusted checkpoint, per partition in order.
func readChains(ctx context.Context, src objects, trusted *keyring.PublicKeyring) (map[partKey][]link, error) {
	out := map[partKey][]link{}
	var names []string
	for o, err := range src.List(ctx, Prefix) {
		if err != nil {
			return nil, err
		}
		names = append(names, o.Name)
	}
	slices.Sort(names)
	for _, name := range names {
		topic, p, _, err := ParseName(name)
		if err != nil {
			continue
		}
		b, err := readAll(ctx, src, name)
		if err != nil {
			return nil, fmt.Errorf("cannot read checkpoint %s: %w", name, err)
		}
		c, _, err := Decode(b, trusted)
		if err != nil {
			continue // verify reports it
		}
		k := partKey{topic, p}
		out[k] = append(out[k], link{c.Seq, Hash(b), c.Time})
	}
	return out, nil
}

// heads is, per partition, the newest checkpoint written before end, in
// (topic, partition) order.
func heads(chains map[partKey][]link, end time.Time) []Leaf {
	leaves := []Leaf{}
	for k, ls := range chains {
		var head *link
		for i := range ls {
			if ls[i].time.Before(end) {
				head = &ls[i]
			}
		}
		if head != nil {
			leaves = append(leaves, Leaf{Topic: k.topic, Partition: k.partition, Seq: head.seq, SHA256: head.hash})
		}
	}
	slices.SortFunc(leaves, func(a, b Leaf) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return int(a.Partition) - int(b.Partition)
	})
	return leaves
}

// WriteRoots writes the root of every day, up to the day before now, that
// has none yet, from the day after the newest root (or the first
// checkpoint's day). Each is signed by sk and stored under object lock
// until lockUntil; a root already stored (another writer) is kept. It
// returns the names written.
func WriteRoots(ctx context.Context, dst writer, trusted *keyring.PublicKeyring, sk keyring.SigningKey, lock func(day time.Time) store.Lock, now time.Time) ([]string, error) {
	var last string
	for o, err := range dst.List(ctx, RootPrefix) {
		if err != nil {
			return nil, err
		}
		last = max(last, o.Name)
	}
	var day time.Time
	prev := ""
	if last != "" {
		b, err := readAll(ctx, dst, last)
		if err != nil {
			return nil, err
		}
		r, err := DecodeRoot(b, trusted)
		if err != nil {
			return nil, fmt.Errorf("the newest root %s: %w", last, err)
		}
		d, _ := time.Parse("2006-01-02", r.Date)
		day, prev = d.AddDate(0, 0, 1), Hash(b)
	}
	chains, err := readChains(ctx, dst, trusted)
	if err != nil {
		return nil, err
	}
	if last == "" {
		// From the first day any checkpoint was written.
		for _, ls := range chains {
			if t := ls[0].time.UTC().Truncate(24 * time.Hour); day.IsZero() || t.Before(day) {
				day = t
			}
		}
		if day.IsZero() {
			return nil, nil // no chain yet
		}
	}
	today := now.UTC().Truncate(24 * time.Hour)
	var written []string
	for ; day.Before(today); day = day.AddDate(0, 0, 1) {
		leaves := heads(chains, day.AddDate(0, 0, 1))
		r := Root{V: 1, Date: day.Format("2006-01-02"), Prev: prev, Leaves: leaves, Merkle: MerkleRoot(leaves), Time: now.UTC()}
		b, err := signed.Encode(RootLabel, &r, sk)
		if err != nil {
			return written, err
		}
		name := RootName(day)
		err = dst.Put(ctx, name, bytes.NewReader(b), int64(len(b)), lock(day))
		if errors.Is(err, store.ErrExists) {
			if b, err = readAll(ctx, dst, name); err != nil {
				return written, err
			}
		} else if err != nil {
			return written, fmt.Errorf("cannot store root %s: %w", name, err)
		} else {
			written = append(written, name)
		}
		prev = Hash(b)
	}
	return written, nil
}
