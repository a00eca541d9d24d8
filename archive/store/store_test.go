package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/lifecycle"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/internal/secret"
	"github.com/custodylog/custody/internal/testkit/stacktest"
	"github.com/custodylog/custody/internal/testkit/testca"
)

// newStore returns a Store on a fresh bucket of the real stack, initialised
// as `custody archive init` would.
func newStore(t *testing.T, r archive.Retention) *Store {
	t.Helper()
	st := stacktest.Get(t)
	s, err := New(Config{Endpoint: st.S3Endpoint, Bucket: stacktest.Name(t, "store"), Region: "us-east-1",
		AccessKey: secret.String(st.S3AccessKey), SecretKey: secret.String(st.S3SecretKey), TLS: st.S3TLS()})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.Init(context.Background(), r, "us-east-1", true)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	if !rep.Created {
		t.Fatalf("Init on a new bucket reported Created=false")
	}
	return s
}

func TestInitRulesAndDrift(t *testing.T) {
	ctx := context.Background()
	r := archive.Retention{DefaultClass: "security", Mode: "COMPLIANCE", Classes: []archive.Class{{Name: "security", Days: 365}, {Name: "analytics", Days: 180}}}
	s := newStore(t, r)

	rep, err := s.Init(ctx, r, "us-east-1", true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Created || len(rep.Drift) != 0 {
		t.Fatalf("second Init = %+v; want no creation and no drift", rep)
	}
	want := []string{
		`custody-_chain-markers: status=Enabled prefix="_chain/" expiration_days=0 expired_delete_marker=true noncurrent_days=0`,
		`custody-_chain: status=Enabled prefix="_chain/" expiration_days=367 expired_delete_marker=false noncurrent_days=1`,
		`custody-_packages-markers: status=Enabled prefix="_packages/" expiration_days=0 expired_delete_marker=true noncurrent_days=0`,
		`custody-_packages: status=Enabled prefix="_packages/" expiration_days=30 expired_delete_marker=false noncurrent_days=1`,
		`custody-analytics-markers: status=Enabled prefix="analytics/" expiration_days=0 expired_delete_marker=true noncurrent_days=0`,
		`custody-analytics: status=Enabled prefix="analytics/" expiration_days=180 expired_delete_marker=false noncurrent_days=1`,
		`custody-security-markers: status=Enabled prefix="security/" expiration_days=0 expired_delete_marker=true noncurrent_days=0`,
		`custody-security: status=Enabled prefix="security/" expiration_days=365 expired_delete_marker=false noncurrent_days=1`,
	}
	if strings.Join(rep.Rules, "\n") != strings.Join(want, "\n") {
		t.Fatalf("rules read back:\n%s\nwant:\n%s", strings.Join(rep.Rules, "\n"), strings.Join(want, "\n"))
	}

	// Someone shortens the security rule and adds a rule of their own.
	lc := lifecycle.NewConfiguration()
	lc.Rules = slices.DeleteFunc(wantRules(r), func(r lifecycle.Rule) bool { return strings.HasPrefix(r.ID, "custody-security") })
	lc.Rules = append(lc.Rules,
		lifecycle.Rule{ID: "custody-security", Status: "Enabled", RuleFilter: lifecycle.Filter{Prefix: "security/"}, Expiration: lifecycle.Expiration{Days: 30}},
		lifecycle.Rule{ID: "ops-tmp", Status: "Enabled", RuleFilter: lifecycle.Filter{Prefix: "tmp/"}, Expiration: lifecycle.Expiration{Days: 2}},
	)
	if err := s.mc.SetBucketLifecycle(ctx, s.bucket, lc); err != nil {
		t.Fatal(err)
	}
	rep, err = s.Init(ctx, r, "us-east-1", false)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(rep.Drift, "\n")
	if !strings.Contains(got, "rule custody-security is {") || !strings.Contains(got, "expiration_days=30") ||
		!strings.Contains(got, "rule custody-security-markers is missing") || len(rep.Drift) != 2 {
		t.Fatalf("drift = %q; want the shortened rule and the missing markers rule", rep.Drift)
	}
	if rep, err = s.Init(ctx, r, "us-east-1", true); err != nil || len(rep.Drift) != 2 {
		t.Fatalf("Init fix = %+v, %v", rep, err)
	}
	if rep, err = s.Init(ctx, r, "us-east-1", false); err != nil || len(rep.Drift) != 0 {
		t.Fatalf("after fixing, drift = %q, %v; want none", rep.Drift, err)
	}
	after, err := s.lifecycle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	foreign := false
	for _, rule := range after {
		foreign = foreign || rule.ID == "ops-tmp"
	}
	if !foreign {
		t.Error("Init removed a lifecycle rule it does not own")
	}
}

func TestPutFencedGetList(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, archive.DefaultRetention())
	until := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)
	body := bytes.Repeat([]byte("0123456789"), 100000)
	name := "security/connection/2026/11/29/05/custody.events+0+00000000000000000000.cseg"
	if err := s.Put(ctx, name, bytes.NewReader(body), int64(len(body)), Lock{Mode: "COMPLIANCE", Until: until}); err != nil {
		t.Fatal(err)
	}
	err := s.Put(ctx, name, bytes.NewReader([]byte("other")), 5, Lock{Mode: "COMPLIANCE", Until: until})
	if !errors.Is(err, ErrExists) {
		t.Fatalf("second Put of the same name: %v; want ErrExists", err)
	}
	lock, err := s.Retention(ctx, name)
	if err != nil || lock.Mode != "COMPLIANCE" || !lock.Until.Equal(until) {
		t.Fatalf("Retention = %+v, %v; want COMPLIANCE until %v", lock, err, until)
	}
	rc, err := s.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("Get returned %d bytes, %v; want the first upload intact", len(got), err)
	}
	rc, err = s.GetRange(ctx, name, 10, 5)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(rc)
	rc.Close()
	if string(got) != "01234" {
		t.Errorf("GetRange(10, 5) = %q; want 01234", got)
	}
	if _, err := s.Get(ctx, "security/absent"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of an absent object: %v; want ErrNotFound", err)
	}
	for i := 1; i <= 3; i++ {
		n := fmt.Sprintf("security/login/2026/11/29/0%d/x+0+%020d.cseg", i, i)
		if err := s.Put(ctx, n, strings.NewReader("x"), 1, Lock{Mode: "COMPLIANCE", Until: until}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	for o, err := range s.List(ctx, "security/login/") {
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, o.Name)
	}
	if len(names) != 3 || !strings.Contains(names[0], "/01/") || !strings.Contains(names[2], "/03/") {
		t.Errorf("List = %q; want the three login segments in order", names)
	}
	// The class's directories: the kind "login" and whatever else is
	// directly under security/ (the first object's path), each once.
	dirs, err := s.Dirs(ctx, "security/")
	if err != nil || !slices.Contains(dirs, "security/login/") || len(dirs) != len(slices.Compact(slices.Sorted(slices.Values(dirs)))) {
		t.Errorf("Dirs(security/) = %q, %v; want security/login/ among them, each once", dirs, err)
	}
	if dirs, err := s.Dirs(ctx, "security/login/2026/11/29/"); err != nil || len(dirs) != 3 || dirs[0] != "security/login/2026/11/29/01/" {
		t.Errorf("Dirs of the day = %q, %v; want its three hours", dirs, err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// TestNoPlaintextAtRest archives 10,000 events full of distinctive markers
// and scans every stored byte, through the S3 API and in MinIO's own data
// directory. A control object stored in clear proves the scan can see a
// marker when there is one.
func TestNoPlaintextAtRest(t *testing.T) {
	ctx := context.Background()
	st := stacktest.Get(t)
	if st.MinIOData == "" {
		t.Fatal("CUSTODY_MINIO_DATA is not set; scripts/stack exports it")
	}
	s := newStore(t, archive.DefaultRetention())
	kr := keyring.New()
	if _, err := kr.Generate(time.Now(), "2026-11", "2026-11"); err != nil {
		t.Fatal(err)
	}
	kek, _ := kr.Get("2026-11.v1")
	hour := time.Date(2026, 11, 29, 5, 0, 0, 0, time.UTC)
	run := stacktest.Name(t, "m")
	marker := "ZQXMARK" + strings.ToUpper(strings.ReplaceAll(run, "-", "")) // unique to this run
	const total, perSegment = 10000, 2500
	// The real lock a segment gets, but on a 1-day class so the test bucket
	// does not stay locked for a year.
	lock, err := LockFor(archive.Retention{Mode: "COMPLIANCE", Classes: []archive.Class{{Name: "security", Days: 1}}}, "security", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	until := lock.Until
	var names []string
	for first := 0; first < total; first += perSegment {
		ix := segment.NewIndexBuilder()
		var body bytes.Buffer
		for i := first; i < first+perSegment; i++ {
			ip := fmt.Sprintf("198.51.100.%d", i%250)
			ix.AddIP(ip)
			ix.Add(segment.FieldLogin, fmt.Sprintf("%s-login-%d", marker, i))
			fmt.Fprintf(&body, `{"v":1,"id":"%s-id-%d","time":"%s","kind":"login","ip":"%s","login":"%s-login-%d","user_agent":"%s-agent/%d","result":"success"}`+"\n",
				marker, i, hour.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano), ip, marker, i, marker, i)
		}
		m := segment.Meta{Class: "security", Kind: "login", Hour: hour, Topic: "custody.events", Partition: 0,
			FirstOffset: int64(first), LastOffset: int64(first + perSegment - 1), Count: perSegment,
			MinTime: hour.Add(time.Duration(first) * time.Millisecond), MaxTime: hour.Add(time.Duration(first+perSegment-1) * time.Millisecond)}
		var seg bytes.Buffer
		w, err := segment.NewWriter(&seg, m, ix, kek, segment.WriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(body.Bytes()); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, w.Name(), &seg, int64(seg.Len()), lock); err != nil {
			t.Fatal(err)
		}
		names = append(names, w.Name())
	}
	control := []byte("control object in clear: " + marker + "-control")
	if err := s.Put(ctx, "control/plain.txt", bytes.NewReader(control), int64(len(control)), Lock{Mode: "GOVERNANCE", Until: until}); err != nil {
		t.Fatal(err)
	}

	// Event content only: the header's metadata (class, kind, hour, offsets)
	// is cleartext by design and is also in the object name.
	needles := [][]byte{[]byte(marker), []byte("198.51.100."), []byte(`"result":"success"`)}
	// Through the S3 API: every segment's raw bytes.
	read := 0
	for _, n := range names {
		rc, err := s.Get(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		read += len(b)
		for _, nd := range needles {
			if bytes.Contains(b, nd) {
				t.Errorf("object %s holds plaintext %q", n, nd)
			}
		}
		// And the segments still read back, all 2,500 events each.
		r, err := segment.Open(bytes.NewReader(b), n, kr, segment.ReaderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := r.Body()
		pt, err := io.ReadAll(body)
		r.Close()
		if err != nil || bytes.Count(pt, []byte{'\n'}) != perSegment || !bytes.Contains(pt, []byte(marker)) {
			t.Fatalf("segment %s does not read back: %v", n, err)
		}
	}
	// In MinIO's data directory: every file under this bucket.
	bucketDir := filepath.Join(st.MinIOData, s.Bucket())
	controlSeen, files := false, 0
	err = filepath.WalkDir(bucketDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(marker+"-control")) {
			controlSeen = true
			return nil
		}
		for _, nd := range needles {
			if bytes.Contains(b, nd) {
				t.Errorf("MinIO file %s holds plaintext %q", p, nd)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !controlSeen {
		t.Fatalf("the scan of %s (%d files) did not find the clear control object; it cannot be trusted", bucketDir, files)
	}
	t.Logf("scanned %d segment bytes via S3 and %d files in %s", read, files, bucketDir)
}

func TestLockFor(t *testing.T) {
	r := archive.DefaultRetention()
	hour := time.Date(2026, 11, 29, 5, 0, 0, 0, time.UTC)
	l, err := LockFor(r, "security", hour)
	if err != nil || l.Mode != "COMPLIANCE" || !l.Until.Equal(time.Date(2027, 11, 29, 6, 0, 0, 0, time.UTC)) {
		t.Errorf("LockFor(security, %v) = %+v, %v; want COMPLIANCE until 2027-11-29T06:00Z", hour, l, err)
	}
	if _, err := LockFor(r, "analytics", hour); err == nil || !strings.Contains(err.Error(), `"analytics"`) {
		t.Errorf("LockFor(unknown class) error = %v", err)
	}
}

// s3.credentials: chain finds the credentials in the environment or in the
// shared credentials file, as the AWS tools do (issue 14 item 4).
func TestCredentialsChain(t *testing.T) {
	st := stacktest.Get(t)
	iamEndpoint = "http://127.0.0.1:1" // never the metadata service
	for _, k := range []string{"MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
		"AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"} {
		t.Setenv(k, "")
	}
	cfg := Defaults()
	cfg.Endpoint, cfg.Credentials, cfg.TLS = st.S3Endpoint, "chain", st.S3TLS()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate with chain and no keys: %v", err)
	}
	list := func() error {
		s, err := New(cfg)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err = s.mc.ListBuckets(ctx)
		return err
	}
	if err := list(); err == nil {
		t.Fatal("the chain found credentials with none anywhere")
	}
	t.Setenv("AWS_ACCESS_KEY_ID", st.S3AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", st.S3SecretKey)
	if err := list(); err != nil {
		t.Fatalf("credentials from AWS_* environment: %v", err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	f := filepath.Join(t.TempDir(), "credentials")
	os.WriteFile(f, []byte("[default]\naws_access_key_id = "+st.S3AccessKey+"\naws_secret_access_key = "+st.S3SecretKey+"\n"), 0o600)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", f)
	if err := list(); err != nil {
		t.Fatalf("credentials from the shared credentials file: %v", err)
	}
	cfg.AccessKey = "x"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "credentials: is chain, but access_key or secret_key is set too") {
		t.Errorf("chain plus static keys: %v", err)
	}
}

// MinIO over TLS with the wrong CA, or with certificate checks asked of
// a plain listener, is refused at the first request with the cause named.
func TestTLSRefusals(t *testing.T) {
	st := stacktest.Get(t)
	if st.S3CAFile == "" {
		t.Fatal("needs the secure stack (scripts/stack up --secure, as make test runs it)")
	}
	other := testca.New(t, "another-ca").WritePEM(t, t.TempDir())
	cfg := Config{Endpoint: st.S3Endpoint, Bucket: stacktest.Name(t, "tls"), Region: "us-east-1",
		AccessKey: secret.String(st.S3AccessKey), SecretKey: secret.String(st.S3SecretKey), TLS: st.S3TLS()}
	cfg.TLS.CAFile = other
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := s.mc.ListBuckets(ctx); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("wrong CA: %v; want the certificate refused", err)
	}
	// TLS off against the HTTPS endpoint: MinIO answers plain HTTP with an
	// error, never with data.
	cfg.TLS = st.S3TLS()
	cfg.TLS.Enabled, cfg.TLS.CAFile = false, ""
	if s, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := s.mc.ListBuckets(ctx); err == nil {
		t.Error("plain HTTP to MinIO's TLS port listed the buckets")
	} else {
		t.Logf("plain HTTP to the TLS endpoint: %v", err)
	}
}
