package store

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/lifecycle"

	"github.com/custodylog/custody/archive"
)

// ChainPrefix is where the chain's checkpoints live (archive/chain).
const ChainPrefix = "_chain/"

// PackagePrefix is where custody serve keeps sealed export packages
// (docs/EXPORTS.md), PackageDays days: a package is a copy of events, for
// its recipients to download, not an archive.
const (
	PackagePrefix = "_packages/"
	PackageDays   = 30
)

// rulePrefix marks the lifecycle rules Custody owns; rules with other IDs
// are left alone.
const rulePrefix = "custody-"

// NoncurrentDays is how long a version that a lifecycle expiration turned
// noncurrent is kept before removal. Object lock still protects it until
// its retain-until date; this only bounds the delay after that.
const NoncurrentDays = 1

// wantRules returns Custody's lifecycle rules for the retention. Each
// class prefix gets two rules because S3 forbids ExpiredObjectDeleteMarker
// in the same Expiration element as Days:
//
//	custody-<class>          Expiration Days = class days, NoncurrentVersionExpiration 1 day
//	custody-<class>-markers  ExpiredObjectDeleteMarker, removing the delete markers left behind
//
// The chain's checkpoints (prefix _chain/, docs/CHAIN.md §6) get the same
// pair as custody-_chain, with Retention.CheckpointDays: they outlive every
// segment they list; export packages (_packages/) as custody-_packages,
// PackageDays. The underscore keeps the IDs apart from any class's.
// Shred receipts, hold records and daily roots have no rule: they are
// kept.
func wantRules(r archive.Retention) []lifecycle.Rule {
	var rules []lifecycle.Rule
	pair := func(id, prefix string, days int) {
		rules = append(rules,
			lifecycle.Rule{
				ID: rulePrefix + id, Status: "Enabled", RuleFilter: lifecycle.Filter{Prefix: prefix},
				Expiration:                  lifecycle.Expiration{Days: lifecycle.ExpirationDays(days)},
				NoncurrentVersionExpiration: lifecycle.NoncurrentVersionExpiration{NoncurrentDays: NoncurrentDays},
			},
			lifecycle.Rule{
				ID: rulePrefix + id + "-markers", Status: "Enabled", RuleFilter: lifecycle.Filter{Prefix: prefix},
				Expiration: lifecycle.Expiration{DeleteMarker: true},
			},
		)
	}
	for _, c := range r.Classes {
		pair(c.Name, c.Name+"/", c.Days)
	}
	if len(r.Classes) > 0 {
		pair("_chain", ChainPrefix, r.CheckpointDays())
		pair("_packages", PackagePrefix, PackageDays)
	}
	return rules
}

// describe renders the parts of a rule Custody cares about, for comparison
// and for drift messages.
func describe(r lifecycle.Rule) string {
	prefix := r.RuleFilter.Prefix
	if prefix == "" {
		prefix = r.Prefix
	}
	return fmt.Sprintf("status=%s prefix=%q expiration_days=%d expired_delete_marker=%t noncurrent_days=%d",
		r.Status, prefix, r.Expiration.Days, bool(r.Expiration.DeleteMarker), r.NoncurrentVersionExpiration.NoncurrentDays)
}

// InitReport says what Init found and did.
type InitReport struct {
	Created bool
	// Drift lists each difference found between the bucket's lifecycle
	// rules and the configured retention, before Init corrected it.
	Drift []string
	// Rules are the Custody rules in force after Init, as read back.
	Rules []string
}

// Init makes the bucket ready for segments: it creates it with object lock
// (and so versioning) if absent, refuses a bucket without object lock, and
// converges Custody's lifecycle rules on the retention classes, keeping any
// rule it does not own. With fix false it only reports drift. The rules are
// read back and verified before Init returns.
func (s *Store) Init(ctx context.Context, r archive.Retention, region string, fix bool) (InitReport, error) {
	var rep InitReport
	exists, err := s.mc.BucketExists(ctx, s.bucket)
	if err != nil {
		return rep, fmt.Errorf("cannot check bucket %s: %w", s.bucket, err)
	}
	if !exists {
		if !fix {
			return rep, fmt.Errorf("bucket %s does not exist", s.bucket)
		}
		if err := s.mc.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: region, ObjectLocking: true}); err != nil {
			return rep, fmt.Errorf("cannot create bucket %s with object lock: %w", s.bucket, err)
		}
		rep.Created = true
	}
	enabled, _, _, _, err := s.mc.GetObjectLockConfig(ctx, s.bucket)
	if err != nil || enabled != "Enabled" {
		return rep, fmt.Errorf("bucket %s has no object lock (%v); it can only be enabled when a bucket is created, so use a new bucket", s.bucket, err)
	}
	v, err := s.mc.GetBucketVersioning(ctx, s.bucket)
	if err != nil {
		return rep, fmt.Errorf("cannot read versioning of bucket %s: %w", s.bucket, err)
	}
	if !v.Enabled() {
		return rep, fmt.Errorf("bucket %s has object lock but versioning is %q", s.bucket, v.Status)
	}

	current, err := s.lifecycle(ctx)
	if err != nil {
		return rep, err
	}
	want := wantRules(r)
	rep.Drift = drift(current, want)
	if len(rep.Drift) > 0 && fix {
		next := lifecycle.NewConfiguration()
		for _, c := range current {
			if !strings.HasPrefix(c.ID, rulePrefix) {
				next.Rules = append(next.Rules, c)
			}
		}
		next.Rules = append(next.Rules, want...)
		if err := s.mc.SetBucketLifecycle(ctx, s.bucket, next); err != nil {
			return rep, fmt.Errorf("cannot set lifecycle rules on bucket %s: %w", s.bucket, err)
		}
		if current, err = s.lifecycle(ctx); err != nil {
			return rep, err
		}
		if d := drift(current, want); len(d) > 0 {
			return rep, fmt.Errorf("lifecycle rules on bucket %s differ after being set: %s", s.bucket, strings.Join(d, "; "))
		}
	}
	if rep.Created {
		rep.Drift = nil // a new bucket has no drift, only rules to set
	}
	for _, c := range current {
		if strings.HasPrefix(c.ID, rulePrefix) {
			rep.Rules = append(rep.Rules, c.ID+": "+describe(c))
		}
	}
	sort.Strings(rep.Rules)
	return rep, nil
}

func (s *Store) lifecycle(ctx context.Context) ([]lifecycle.Rule, error) {
	lc, err := s.mc.GetBucketLifecycle(ctx, s.bucket)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchLifecycleConfiguration" {
			return nil, nil
		}
		return nil, fmt.Errorf("cannot read lifecycle rules of bucket %s: %w", s.bucket, err)
	}
	return lc.Rules, nil
}

// drift lists how current differs from want, for Custody's rules only.
func drift(current, want []lifecycle.Rule) []string {
	var out []string
	have := map[string]lifecycle.Rule{}
	for _, c := range current {
		if strings.HasPrefix(c.ID, rulePrefix) {
			have[c.ID] = c
		}
	}
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w.ID] = true
		c, ok := have[w.ID]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("rule %s is missing", w.ID))
		case describe(c) != describe(w):
			out = append(out, fmt.Sprintf("rule %s is {%s}; want {%s}", w.ID, describe(c), describe(w)))
		}
	}
	for id := range have {
		if !wanted[id] {
			out = append(out, fmt.Sprintf("rule %s is not in the configured retention classes", id))
		}
	}
	sort.Strings(out)
	return out
}
