// Package store keeps segments in an S3 bucket through minio-go: MinIO,
// AWS S3 or any S3-compatible store with object lock.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/custodylog/custody/archive"
)

// ErrExists is returned by Put when an object of that name is already
// stored: a segment is written once, and a second writer is fenced off.
var ErrExists = errors.New("object already exists")

// ErrNotFound is returned by Get and Stat for an absent object.
var ErrNotFound = errors.New("object not found")

// Store is one bucket. It is safe for concurrent use.
type Store struct {
	mc     *minio.Client
	bucket string
}

// New connects lazily: no request is made until the first call.
func New(cfg Config) (*Store, error) {
	tc, err := cfg.TLS.Build()
	if err != nil {
		return nil, fmt.Errorf("s3.tls: %w", err)
	}
	opts := &minio.Options{
		Creds:  credentialsFor(cfg),
		Secure: cfg.TLS.Enabled,
		Region: cfg.Region,
	}
	if tc != nil {
		tr, err := minio.DefaultTransport(true)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
		opts.Transport = tr
	}
	mc, err := minio.New(cfg.Endpoint, opts)
	if err != nil {
		return nil, fmt.Errorf("cannot create S3 client for %s: %w", cfg.Endpoint, err)
	}
	return &Store{mc: mc, bucket: cfg.Bucket}, nil
}

// credentialsFor builds the configured credentials provider.
func credentialsFor(cfg Config) *credentials.Credentials {
	if cfg.Credentials != "chain" {
		return credentials.NewStaticV4(cfg.AccessKey.Reveal(), cfg.SecretKey.Reveal(), "")
	}
	// The order is the documented one (Config.Credentials). IAM comes last:
	// it is the only provider that may reach the network (an STS endpoint
	// or the instance metadata service), and then only when nothing
	// before it answered.
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvMinio{},
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{},
		&credentials.IAM{Client: &http.Client{Transport: http.DefaultTransport, Timeout: 10 * time.Second}, Endpoint: iamEndpoint},
	})
}

// iamEndpoint overrides the IAM provider's endpoint; tests point it at a
// closed loopback port so that nothing leaves the machine.
var iamEndpoint = ""

// Bucket is the bucket's name.
func (s *Store) Bucket() string { return s.bucket }

// Lock is the object-lock retention put on an object.
type Lock struct {
	Mode  string // COMPLIANCE or GOVERNANCE
	Until time.Time
}

// Put stores r (size bytes) under name with the given retention. It is a
// conditional write (If-None-Match: *), so it fails with ErrExists rather
// than add a second version when name is already stored; that is the fence
// against a stale archiver re-uploading a segment.
func (s *Store) Put(ctx context.Context, name string, r io.Reader, size int64, lock Lock) error {
	mode := minio.RetentionMode(lock.Mode)
	if !mode.IsValid() {
		return fmt.Errorf("cannot upload segment %s: lock mode %q is not COMPLIANCE or GOVERNANCE", name, lock.Mode)
	}
	opts := minio.PutObjectOptions{
		ContentType:     "application/vnd.custody.segment",
		Mode:            mode,
		RetainUntilDate: lock.Until.UTC(),
		// Single-part uploads up to 128 MiB: segments are bounded by the
		// flush size, and a single PUT is atomic.
		PartSize: 128 << 20,
	}
	opts.SetMatchETagExcept("*")
	if _, err := s.mc.PutObject(ctx, s.bucket, name, r, size, opts); err != nil {
		if isPreconditionFailed(err) {
			return fmt.Errorf("cannot upload segment %s: %w", name, ErrExists)
		}
		return fmt.Errorf("cannot upload segment %s: %w", name, err)
	}
	return nil
}

func isPreconditionFailed(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.StatusCode == http.StatusPreconditionFailed || r.Code == "PreconditionFailed"
}

func isNotFound(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.StatusCode == http.StatusNotFound || r.Code == "NoSuchKey"
}

// Get streams the object. The caller closes the reader.
func (s *Store) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	return s.get(ctx, name, minio.GetObjectOptions{})
}

// GetRange streams length bytes from offset off.
func (s *Store) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	var o minio.GetObjectOptions
	if err := o.SetRange(off, off+length-1); err != nil {
		return nil, err
	}
	return s.get(ctx, name, o)
}

// GetVersionRange streams length bytes from offset off of one version of
// name: a held segment that lifecycle has hidden behind a delete marker is
// still read by its version (docs/HOLDS.md).
func (s *Store) GetVersionRange(ctx context.Context, name, version string, off, length int64) (io.ReadCloser, error) {
	o := minio.GetObjectOptions{VersionID: version}
	if err := o.SetRange(off, off+length-1); err != nil {
		return nil, err
	}
	return s.get(ctx, name, o)
}

// get is one GET request. minio.Client.GetObject is lazy, and finding a
// missing object before the first Read took a HEAD request first (Stat):
// two round trips for every read, most of a needle query's requests. The
// Core call sends the GET alone and reports a missing object at once.
func (s *Store) get(ctx context.Context, name string, o minio.GetObjectOptions) (io.ReadCloser, error) {
	body, _, _, err := minio.Core{Client: s.mc}.GetObject(ctx, s.bucket, name, o)
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("cannot get segment %s: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("cannot get segment %s: %w", name, err)
	}
	return body, nil
}

// Object is one listed object.
type Object struct {
	Name         string
	Size         int64
	LastModified time.Time
	// Version is the S3 version ID (Stat only; "" when unversioned).
	Version string
}

// List yields the objects under prefix in lexical order. Iteration stops at
// the first error, which is yielded last.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[Object, error] {
	return func(yield func(Object, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // stops minio-go's listing goroutine if we stop early
		for o := range s.mc.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if o.Err != nil {
				yield(Object{}, fmt.Errorf("cannot list %s/%s: %w", s.bucket, prefix, o.Err))
				return
			}
			if !yield(Object{Name: o.Key, Size: o.Size, LastModified: o.LastModified}, nil) {
				return
			}
		}
	}
}

// Dirs lists the "directories" directly under prefix (which ends in
// "/"): the distinct next path elements, each with its trailing "/".
func (s *Store) Dirs(ctx context.Context, prefix string) ([]string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var out []string
	for o := range s.mc.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: false}) {
		if o.Err != nil {
			return nil, fmt.Errorf("cannot list %s/%s: %w", s.bucket, prefix, o.Err)
		}
		if strings.HasSuffix(o.Key, "/") {
			out = append(out, o.Key)
		}
	}
	return out, nil
}

// Stat returns the object's size, or ErrNotFound.
func (s *Store) Stat(ctx context.Context, name string) (Object, error) {
	info, err := s.mc.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
	if err != nil {
		if isNotFound(err) {
			return Object{}, fmt.Errorf("cannot stat segment %s: %w", name, ErrNotFound)
		}
		return Object{}, fmt.Errorf("cannot stat segment %s: %w", name, err)
	}
	return Object{Name: info.Key, Size: info.Size, LastModified: info.LastModified, Version: info.VersionID}, nil
}

// Retention reads back the lock on the current version of name.
func (s *Store) Retention(ctx context.Context, name string) (Lock, error) {
	mode, until, err := s.mc.GetObjectRetention(ctx, s.bucket, name, "")
	if err != nil {
		return Lock{}, fmt.Errorf("cannot read retention of %s: %w", name, err)
	}
	var l Lock
	if mode != nil {
		l.Mode = string(*mode)
	}
	if until != nil {
		l.Until = *until
	}
	return l, nil
}

// Ping checks that the bucket is reachable, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	ok, err := s.mc.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("bucket %s unreachable: %w", s.bucket, err)
	}
	if !ok {
		return fmt.Errorf("bucket %s does not exist; run `custody archive init`", s.bucket)
	}
	return nil
}

// LockFor is the retention of a segment of the given class and event hour:
// the configured mode, until the end of the hour plus the class's days.
func LockFor(r archive.Retention, class string, hour time.Time) (Lock, error) {
	c, ok := r.Class(class)
	if !ok {
		return Lock{}, fmt.Errorf("retention class %q is not configured", class)
	}
	return Lock{Mode: r.Mode, Until: c.RetainUntil(hour)}, nil
}
