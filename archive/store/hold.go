package store

import (
	"bytes"
	"context"
	"fmt"

	"github.com/minio/minio-go/v7"
)

// Legal hold support (docs/HOLDS.md). An S3 legal hold keeps an object
// version from deletion, by anyone and by lifecycle, until it is removed;
// unlike retention it has no date. Holds are set on specific versions: a
// segment is written once, so its version is the one Stat returns.

// WriteOptions are the options of Write.
type WriteOptions struct {
	// Overwrite allows replacing the current version (a new version in a
	// versioned bucket); without it the write is create-only, like Put.
	Overwrite bool
	// LegalHold puts the new version under legal hold.
	LegalHold bool
	// Lock, if set, retains the new version until its date.
	Lock *Lock
	// ContentType defaults to application/json.
	ContentType string
}

// Write stores a small object and returns its version ID. A create-only
// write of a name already present fails with ErrExists.
func (s *Store) Write(ctx context.Context, name string, b []byte, o WriteOptions) (string, error) {
	opts := minio.PutObjectOptions{ContentType: o.ContentType}
	if opts.ContentType == "" {
		opts.ContentType = "application/json"
	}
	if o.LegalHold {
		opts.LegalHold = minio.LegalHoldEnabled
	}
	if o.Lock != nil {
		mode := minio.RetentionMode(o.Lock.Mode)
		if !mode.IsValid() {
			return "", fmt.Errorf("cannot write %s: lock mode %q is not COMPLIANCE or GOVERNANCE", name, o.Lock.Mode)
		}
		opts.Mode, opts.RetainUntilDate = mode, o.Lock.Until.UTC()
	}
	if !o.Overwrite {
		opts.SetMatchETagExcept("*")
	}
	info, err := s.mc.PutObject(ctx, s.bucket, name, bytes.NewReader(b), int64(len(b)), opts)
	if err != nil {
		if isPreconditionFailed(err) {
			return "", fmt.Errorf("cannot write %s: %w", name, ErrExists)
		}
		return "", fmt.Errorf("cannot write %s: %w", name, err)
	}
	return info.VersionID, nil
}

// SetLegalHold puts (on) or lifts (off) the legal hold of one version of
// name ("" is the current version). Repeating it is harmless.
func (s *Store) SetLegalHold(ctx context.Context, name, version string, on bool) error {
	st := minio.LegalHoldDisabled
	if on {
		st = minio.LegalHoldEnabled
	}
	if err := s.mc.PutObjectLegalHold(ctx, s.bucket, name, minio.PutObjectLegalHoldOptions{VersionID: version, Status: &st}); err != nil {
		if isNotFound(err) {
			return fmt.Errorf("cannot set the legal hold of %s: %w", name, ErrNotFound)
		}
		return fmt.Errorf("cannot set the legal hold of %s: %w", name, err)
	}
	return nil
}

// LegalHold reports whether one version of name ("" is the current one)
// is under legal hold.
func (s *Store) LegalHold(ctx context.Context, name, version string) (bool, error) {
	st, err := s.mc.GetObjectLegalHold(ctx, s.bucket, name, minio.GetObjectLegalHoldOptions{VersionID: version})
	if err != nil {
		// An object that never had a legal hold may answer "no legal hold
		// configuration" rather than OFF.
		if r := minio.ToErrorResponse(err); r.Code == "NoSuchObjectLockConfiguration" {
			return false, nil
		}
		if isNotFound(err) {
			return false, fmt.Errorf("cannot read the legal hold of %s: %w", name, ErrNotFound)
		}
		return false, fmt.Errorf("cannot read the legal hold of %s: %w", name, err)
	}
	return st != nil && *st == minio.LegalHoldEnabled, nil
}

// RemoveAll deletes every version of name, delete markers included. It
// fails on a version still under legal hold or retention.
func (s *Store) RemoveAll(ctx context.Context, name string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for o := range s.mc.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: name, WithVersions: true}) {
		if o.Err != nil {
			return fmt.Errorf("cannot list the versions of %s: %w", name, o.Err)
		}
		if o.Key != name {
			continue
		}
		if err := s.mc.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{VersionID: o.VersionID}); err != nil {
			return fmt.Errorf("cannot remove version %s of %s: %w", o.VersionID, name, err)
		}
	}
	return nil
}
