package export

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/chain"
	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
)

// Finding kinds of CheckProvenance.
const (
	Missing = "missing" // a segment or checkpoint the manifest names is not in the bucket, and not past retention
)

// objects is what checking provenance reads from the bucket.
type objects interface {
	Get(ctx context.Context, name string) (io.ReadCloser, error)
}

// ProvenanceReport is what CheckProvenance found.
type ProvenanceReport struct {
	Segments int       `json:"segments"` // found with the SHA-256 the manifest records
	Expired  int       `json:"expired"`  // gone, past their class's retention
	Findings []Finding `json:"findings"`
}

// CheckProvenance re-checks a manifest's provenance against the live
// bucket: each segment is there with the SHA-256 recorded, and so is the
// checkpoint that lists it, which is signed by a trusted archiver and lists
// the segment with that SHA-256 (docs/CHAIN.md). A segment gone past its
// class's retention is counted, not a finding. now is the clock for that.
func CheckProvenance(ctx context.Context, src objects, trusted *keyring.PublicKeyring, ret archive.Retention, m *Manifest, now time.Time) (*ProvenanceReport, error) {
	rep := &ProvenanceReport{}
	find := func(kind, object, format string, args ...any) {
		rep.Findings = append(rep.Findings, Finding{Kind: kind, File: object, Detail: fmt.Sprintf(format, args...)})
	}
	checkpoints := map[string]*chain.Checkpoint{}
	for _, s := range m.Provenance {
		sum, err := hashObject(ctx, src, s.Segment)
		if errors.Is(err, store.ErrNotFound) {
			if n, perr := segment.ParseName(s.Segment); perr == nil {
				if c, ok := ret.Class(n.Class); ok && !c.RetainUntil(n.Hour).After(now) {
					rep.Expired++
					continue
				}
			}
			find(Missing, s.Segment, "named by the manifest (%d events) and not in the bucket", s.Events)
			continue
		}
		if err != nil {
			return nil, err
		}
		if sum != s.SHA256 {
			find(Modified, s.Segment, "SHA-256 %s in the bucket; the manifest records %s", sum, s.SHA256)
			continue
		}
		if s.Checkpoint == "" {
			rep.Segments++ // not yet listed when exported: its hash is all there is
			continue
		}
		c, ok := checkpoints[s.Checkpoint]
		if !ok {
			b, err := readObject(ctx, src, s.Checkpoint)
			switch {
			case errors.Is(err, store.ErrNotFound):
				find(Missing, s.Checkpoint, "the checkpoint listing %s is not in the bucket", s.Segment)
			case err != nil:
				return nil, err
			case chain.Hash(b) != s.CheckpointSHA256:
				find(Modified, s.Checkpoint, "SHA-256 %s in the bucket; the manifest records %s", chain.Hash(b), s.CheckpointSHA256)
			default:
				if c, _, err = chain.Decode(b, trusted); err != nil {
					find(BadSignature, s.Checkpoint, "%v", err)
					c = nil
				}
			}
			checkpoints[s.Checkpoint] = c
		}
		if c == nil {
			continue // reported once
		}
		listed := false
		for _, cs := range c.Segments {
			listed = listed || (cs.Name == s.Segment && cs.SHA256 == s.SHA256)
		}
		if !listed {
			find(Modified, s.Segment, "checkpoint %s does not list it with this SHA-256", s.Checkpoint)
			continue
		}
		rep.Segments++
	}
	return rep, nil
}

func readObject(ctx context.Context, src objects, name string) ([]byte, error) {
	rc, err := src.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, maxSmallFile))
}

func hashObject(ctx context.Context, src objects, name string) (string, error) {
	rc, err := src.Get(ctx, name)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return "", fmt.Errorf("cannot read %s: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// lister is what finding sources reads from the bucket.
type lister interface {
	objects
	List(ctx context.Context, prefix string) iter.Seq2[store.Object, error]
}

// Sources is the provenance of an export: for each segment that
// contributed events (name → events), its SHA-256 and the checkpoint that
// lists it, from the chains of the segments' partitions (read whole:
// checkpoints are small). A segment no checkpoint lists yet (stored in the
// last flush window) is hashed from the bucket and has no checkpoint.
func Sources(ctx context.Context, src lister, trusted *keyring.PublicKeyring, contributed map[string]int64) ([]Source, error) {
	parts := map[string]bool{}
	for name := range contributed {
		n, err := segment.ParseName(name)
		if err != nil {
			return nil, err
		}
		parts[fmt.Sprintf("%s%s/%d/", chain.Prefix, n.Topic, n.Partition)] = true
	}
	out := make([]Source, 0, len(contributed))
	found := map[string]bool{}
	for prefix := range parts {
		for o, err := range src.List(ctx, prefix) {
			if err != nil {
				return nil, err
			}
			b, err := readObject(ctx, src, o.Name)
			if err != nil {
				return nil, fmt.Errorf("cannot read checkpoint %s: %w", o.Name, err)
			}
			c, _, err := chain.Decode(b, trusted)
			if err != nil {
				continue // custody verify names it; the segment is then hashed below
			}
			for _, s := range c.Segments {
				if n, ok := contributed[s.Name]; ok && !found[s.Name] {
					found[s.Name] = true
					out = append(out, Source{Segment: s.Name, SHA256: s.SHA256, Events: n, Checkpoint: o.Name, CheckpointSHA256: chain.Hash(b)})
				}
			}
		}
	}
	for name, n := range contributed {
		if found[name] {
			continue
		}
		sum, err := hashObject(ctx, src, name)
		if err != nil {
			return nil, fmt.Errorf("cannot hash segment %s: %w", name, err)
		}
		out = append(out, Source{Segment: name, SHA256: sum, Events: n})
	}
	slices.SortFunc(out, func(a, b Source) int { return strings.Compare(a.Segment, b.Segment) })
	return out, nil
}
