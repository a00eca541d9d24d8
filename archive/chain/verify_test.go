package chain_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/chain"
	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/internal/testkit/archivetest"
	"github.com/custodylog/custody/internal/testkit/pipelinetest"
	"github.com/custodylog/custody/internal/testkit/stacktest"
)

var retention = archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Classes: []archive.Class{{Name: "security", Days: 30}, {Name: "short", Days: 7}}}

// rig is an archive built by the real archiver from real Kafka into a
// GOVERNANCE bucket (so that a test can delete under bypass), and a raw
// S3 client to tamper with it.
type rig struct {
	s   *store.Store
	mc  *minio.Client
	kr  archivetest.Keys
	now time.Time
}

func newRig(t *testing.T) *rig {
	st := stacktest.Get(t)
	now := time.Now().UTC()
	topic := stacktest.Topic(t, st, 2)
	values := archivetest.Events(3000, "v", []string{"security", "short"}, now)
	archivetest.Produce(t, st, topic, values)
	s, _ := archivetest.NewStore(t, st, retention)
	kr := archivetest.Keyring(t)
	pipelinetest.Archive(t, st, topic, s, retention, kr.Write(), 40)
	mc := st.MinIO(t)
	return &rig{s: s, mc: mc, kr: kr, now: now}
}

func (r *rig) verify(t *testing.T) *chain.Report {
	t.Helper()
	rep, err := chain.Verify(context.Background(), r.s, chain.Options{Trusted: r.kr.Public, Retention: retention, Now: time.Now(), Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func (r *rig) names(t *testing.T, prefix string) []string {
	t.Helper()
	var out []string
	for o, err := range r.s.List(context.Background(), prefix) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, o.Name)
	}
	return out
}

func (r *rig) read(t *testing.T, name string) []byte {
	t.Helper()
	rc, err := r.s.Get(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// remove hides name behind a delete marker, as a deletion in a versioned
// bucket does; t.Cleanup removes the marker, so the next case starts from
// the intact archive.
func (r *rig) remove(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	if err := r.mc.RemoveObject(ctx, r.s.Bucket(), name, minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	var marker string
	for o := range r.mc.ListObjects(ctx, r.s.Bucket(), minio.ListObjectsOptions{Prefix: name, WithVersions: true}) {
		if o.Key == name && o.IsDeleteMarker && o.IsLatest {
			marker = o.VersionID
		}
	}
	if marker == "" {
		t.Fatalf("no delete marker over %s", name)
	}
	t.Cleanup(func() {
		if err := r.mc.RemoveObject(ctx, r.s.Bucket(), name, minio.RemoveObjectOptions{VersionID: marker, GovernanceBypass: true}); err != nil {
			t.Errorf("cannot restore %s: %v", name, err)
		}
	})
}

// overwrite stores b as a new version of name (anyone with write access
// can); t.Cleanup removes that version.
func (r *rig) overwrite(t *testing.T, name string, b []byte) {
	t.Helper()
	ctx := context.Background()
	info, err := r.mc.PutObject(ctx, r.s.Bucket(), name, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.mc.RemoveObject(ctx, r.s.Bucket(), name, minio.RemoveObjectOptions{VersionID: info.VersionID, GovernanceBypass: true}); err != nil {
			t.Errorf("cannot restore %s: %v", name, err)
		}
	})
}

// want checks that rep has findings of kind naming each object, and no
// other kind than allowed.
func want(t *testing.T, rep *chain.Report, kind string, objects []string, alsoAllowed ...string) {
	t.Helper()
	if len(rep.Findings) == 0 {
		t.Fatalf("no finding; want %s for %v", kind, objects)
	}
	found := map[string]bool{}
	for _, f := range rep.Findings {
		if f.Kind == kind {
			found[f.Object] = true
		} else if !slices.Contains(alsoAllowed, f.Kind) {
			t.Errorf("unexpected finding: %s", f)
		}
	}
	for _, o := range objects {
		if !found[o] {
			t.Errorf("no %s finding names %s; findings:\n%s", kind, o, findings(rep))
		}
	}
}

func findings(rep *chain.Report) string {
	var b strings.Builder
	for _, f := range rep.Findings {
		fmt.Fprintln(&b, f)
	}
	return b.String()
}

// TestVerifyDetectsTampering builds one archive and tampers with it in
// each way docs/CHAIN.md §4 names, one case at a time (each undone after
// it): every one must be found and named; the intact archive has none.
func TestVerifyDetectsTampering(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	clean := r.verify(t)
	if len(clean.Findings) != 0 || clean.Checkpoints < 4 || clean.Partitions != 2 || clean.Records != 3000 {
		t.Fatalf("the intact archive: %d partitions, %d checkpoints, %d records; want 2, at least 4, 3000; findings:\n%s",
			clean.Partitions, clean.Checkpoints, clean.Records, findings(clean))
	}
	segs := r.names(t, "security/")
	cps := r.names(t, chain.Prefix)
	// The first partition's checkpoints, in chain order.
	var p0 []string
	for _, c := range cps {
		if strings.HasPrefix(c, cps[0][:strings.LastIndexByte(cps[0], '/')+1]) {
			p0 = append(p0, c)
		}
	}
	if len(p0) < 3 {
		t.Fatalf("partition 0 has %d checkpoints; the cases need 3", len(p0))
	}
	// Two consecutive segments of one key and partition: the same
	// directory (class, kind, hour), the partition part of the name equal.
	var pair []string
	for i := 1; i < len(segs) && pair == nil; i++ {
		a, _ := segment.ParseName(segs[i-1])
		b, _ := segment.ParseName(segs[i])
		if a.Class == b.Class && a.Kind == b.Kind && a.Hour.Equal(b.Hour) && a.Partition == b.Partition {
			pair = segs[i-1 : i+1]
		}
	}
	if pair == nil {
		t.Fatal("no two consecutive segments of one key: the rig's flush size is too large")
	}
	// The biggest hour of one kind.
	hours := map[string][]string{}
	for _, s := range segs {
		dir := s[:strings.LastIndexByte(s, '/')+1]
		hours[dir] = append(hours[dir], s)
	}
	var hour []string
	for _, ss := range hours {
		if len(ss) > len(hour) {
			hour = ss
		}
	}
	newest := cps[len(cps)-1]
	var newestCP chain.Checkpoint
	if c, _, err := chain.Decode(r.read(t, newest), r.kr.Public); err != nil {
		t.Fatal(err)
	} else {
		newestCP = *c
	}

	t.Run("delete one segment", func(t *testing.T) {
		r.remove(t, segs[0])
		want(t, r.verify(t), chain.Missing, segs[:1])
	})
	t.Run("delete two consecutive segments", func(t *testing.T) {
		r.remove(t, pair[0])
		r.remove(t, pair[1])
		want(t, r.verify(t), chain.Missing, pair)
	})
	t.Run("delete a whole hour of one kind", func(t *testing.T) {
		for _, s := range hour {
			r.remove(t, s)
		}
		want(t, r.verify(t), chain.Missing, hour)
	})
	t.Run("delete the newest checkpoint", func(t *testing.T) {
		if len(newestCP.Segments) == 0 {
			t.Fatalf("the newest checkpoint %s lists no segment", newest)
		}
		r.remove(t, newest)
		var listed []string
		for _, s := range newestCP.Segments {
			listed = append(listed, s.Name)
		}
		// Its segments are no longer listed by any checkpoint.
		want(t, r.verify(t), chain.Extra, listed, chain.OffsetGap)
	})
	t.Run("flip one byte in a segment", func(t *testing.T) {
		b := r.read(t, segs[1])
		b[len(b)/2] ^= 1
		r.overwrite(t, segs[1], b)
		want(t, r.verify(t), chain.Modified, segs[1:2])
	})
	t.Run("flip one byte in a checkpoint", func(t *testing.T) {
		b := r.read(t, p0[1])
		i := bytes.Index(b, []byte(`"offset":`)) + len(`"offset":`)
		b[i] ^= 1 // a digit becomes another digit
		r.overwrite(t, p0[1], b)
		// What it listed is vouched for by no valid checkpoint now: its
		// segments show as extra, and the counts as a gap.
		want(t, r.verify(t), chain.BadSignature, p0[1:2], chain.BrokenLink, chain.Extra, chain.OffsetGap)
	})
	t.Run("plant a validly encrypted segment no checkpoint lists", func(t *testing.T) {
		// Anyone holding a trusted archiver key can make one; only the
		// chain tells it from the archive's own.
		m, err := segment.ParseName(segs[0])
		if err != nil {
			t.Fatal(err)
		}
		m.FirstOffset, m.LastOffset, m.Count, m.MinTime, m.MaxTime = 900000, 900000, 1, m.Hour, m.Hour
		pub, err := r.kr.Public.Current(m.Class, m.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if m.Kind == "" { // a segment of every kind, as the archiver writes
			m.Kinds = map[string]int64{"connection": 1}
		}
		var buf bytes.Buffer
		w, err := segment.NewWriterV3(&buf, m, segment.NewIndexBuilder(), pub, r.kr.Signer)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, `{"v":1}`+"\n")
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		lock, _ := store.LockFor(retention, m.Class, m.Hour)
		if err := r.s.Put(ctx, w.Name(), bytes.NewReader(buf.Bytes()), int64(buf.Len()), lock); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			r.mc.RemoveObject(ctx, r.s.Bucket(), w.Name(), minio.RemoveObjectOptions{GovernanceBypass: true})
		})
		want(t, r.verify(t), chain.Extra, []string{w.Name()})
	})
	t.Run("swap two checkpoints", func(t *testing.T) {
		a, b := r.read(t, p0[1]), r.read(t, p0[2])
		r.overwrite(t, p0[1], b)
		r.overwrite(t, p0[2], a)
		want(t, r.verify(t), chain.BrokenLink, p0[1:3], chain.OffsetGap)
	})
	t.Run("replace a checkpoint with one signed by an unknown key", func(t *testing.T) {
		c, _, err := chain.Decode(r.read(t, p0[1]), r.kr.Public)
		if err != nil {
			t.Fatal(err)
		}
		rogue, err := keyring.NewSigningKey(r.kr.Signer.ID, time.Now()) // the trusted name, not the trusted key
		if err != nil {
			t.Fatal(err)
		}
		b, err := chain.Encode(c, rogue)
		if err != nil {
			t.Fatal(err)
		}
		r.overwrite(t, p0[1], b)
		// What it listed is vouched for by no valid checkpoint now: its
		// segments show as extra, and the counts as a gap.
		want(t, r.verify(t), chain.BadSignature, p0[1:2], chain.BrokenLink, chain.Extra, chain.OffsetGap)
	})
	t.Run("deep", func(t *testing.T) {
		rep, err := chain.Verify(ctx, r.s, chain.Options{Trusted: r.kr.Public, Retention: retention, Now: time.Now(), Concurrency: 4, Deep: r.kr.Read()})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Findings) != 0 || rep.Events != int64(archivetest.Read(t, r.s, r.kr).Events) {
			t.Fatalf("--deep of the intact archive: %d events checked; findings:\n%s", rep.Events, findings(rep))
		}
		// Keys that cannot open the segments (shredded, or another
		// archive's): every segment checked is named.
		other := archivetest.Keyring(t)
		rep, err = chain.Verify(ctx, r.s, chain.Options{Trusted: r.kr.Public, Retention: retention, Now: time.Now(), Concurrency: 4, Deep: other.Read()})
		if err != nil {
			t.Fatal(err)
		}
		want(t, rep, chain.Invalid, segs)
	})
	t.Run("intact again", func(t *testing.T) {
		if rep := r.verify(t); len(rep.Findings) != 0 {
			t.Errorf("after undoing every case:\n%s", findings(rep))
		}
	})
}
