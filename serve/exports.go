package serve

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/crypto/seal"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/export"
	"github.com/custodylog/custody/internal/announce"
	"github.com/custodylog/custody/internal/signed"
	"github.com/custodylog/custody/query"
)

// Exports live in the bucket, so that every `custody serve` shares them
// and a restart loses none (docs/EXPORTS.md §6). Each step of an export is
// its own signed, create-only object under _exports/<id>/: the request,
// each approval (one per identity: the store refuses a second), each
// attempt to run it (the claim: one instance wins), its result, and each
// download. No object is ever rewritten except an attempt's heartbeat,
// which only that attempt writes, so instances never race on a record.
// The package itself is sealed (AES-256-GCM, its key sealed to a period
// key of the public keyring) under _packages/, kept PackageDays.

// Object prefixes.
const (
	ExportPrefix  = "_exports/"
	PackagePrefix = store.PackagePrefix
)

const exportLabel = "custody export record v1"

// packageAAD binds a sealed package's stream and data key to its name.
func packageAAD(name string) []byte { return []byte("custody export package v1\x00" + name) }

// Export statuses.
const (
	ExportPending = "pending" // waiting for approvals
	ExportQueued  = "queued"  // approved, not running
	ExportRunning = "running"
	ExportReady   = "ready"
	ExportFailed  = "failed"
)

// ExportRequest is the body of POST /v1/exports: a query (every field of
// POST /v1/query but limit) and who asks for the disclosure.
type ExportRequest struct {
	QueryRequest
	Authority  string `json:"authority,omitempty"`
	LegalBasis string `json:"legal_basis,omitempty"`
	Reference  string `json:"reference,omitempty"`
}

// exportRequest is the request object: what was asked, by whom, under
// which scope, with the approvals it needs.
type exportRequest struct {
	ID string `json:"id"`
	// Kind is "disclosure" (bound to Case) or "subject-access" (bound to
	// the rights request Rights, over the whole retention window).
	Kind        string         `json:"kind"`
	Rights      string         `json:"rights_request,omitempty"`
	Case        string         `json:"case"`
	Request     ExportRequest  `json:"request"`
	By          string         `json:"by"`
	Role        Role           `json:"role"`
	TenantScope []string       `json:"tenant_scope,omitempty"`
	Approvals   int            `json:"approvals"` // identities needed, the requester's included
	At          time.Time      `json:"at"`
	Attrs       map[string]any `json:"filters"`
}

type exportApproval struct {
	By string    `json:"by"`
	At time.Time `json:"at"`
}

type exportAttempt struct {
	N        int       `json:"n"`
	Instance string    `json:"instance"`
	At       time.Time `json:"at"`
}

type exportHeartbeat struct {
	N        int       `json:"n"`
	At       time.Time `json:"at"`
	Events   int64     `json:"events"`
	Segments int64     `json:"segments"`
}

// ExportResult is how an export ended.
type ExportResult struct {
	Status   string    `json:"status"` // ready or failed
	Attempt  int       `json:"attempt"`
	At       time.Time `json:"at"`
	Error    string    `json:"error,omitempty"`
	Package  string    `json:"package,omitempty"` // object name
	Size     int64     `json:"size,omitempty"`    // of the zip
	SHA256   string    `json:"sha256,omitempty"`  // of the zip
	Events   int64     `json:"events"`
	Segments int       `json:"segments"` // that contributed events
	Manifest string    `json:"manifest_sha256,omitempty"`
	Failed   []string  `json:"failed_segments,omitempty"`
}

// Export is the state of an export, as GET /v1/exports/{id} answers.
type Export struct {
	ID              string           `json:"id"`
	Kind            string           `json:"kind"`
	RightsRequest   string           `json:"rights_request,omitempty"`
	Case            string           `json:"case"`
	Status          string           `json:"status"`
	RequestedBy     string           `json:"requested_by"`
	RequestedAt     time.Time        `json:"requested_at"`
	Purpose         string           `json:"purpose"`
	Filters         map[string]any   `json:"filters"`
	TenantScope     []string         `json:"tenant_scope,omitempty"`
	ApprovalsNeeded int              `json:"approvals_needed"`
	Approvals       []exportApproval `json:"approvals"`
	Progress        *exportHeartbeat `json:"progress,omitempty"`
	Result          *ExportResult    `json:"result,omitempty"`
	Downloads       []exportApproval `json:"downloads"`
	req             exportRequest
	attempts        []exportAttempt
}

// exportObjects is what exports need from the bucket.
type exportObjects interface {
	caseObjects
	Put(ctx context.Context, name string, r io.Reader, size int64, lock store.Lock) error
}

// packageKeys seal and open a package's data key: the public keyring's
// current key of a class, and the reader's private keys.
type packageKeys interface {
	OpenKey(id string, info, sealed []byte) ([]byte, error)
}

// ExportDeps are what the export runner is built on.
type ExportDeps struct {
	Store   exportObjects
	Signer  keyring.SigningKey
	Trusted *keyring.PublicKeyring // checks records; its current class key seals packages
	Keys    packageKeys
	Class   string // the class whose current key seals packages
	Mode    string // object-lock mode of packages
	// Instance names this process in attempt records.
	Instance string
	Software string
	TempDir  string
	// RetentionDays are the classes' retention, for the packages' cover
	// page (what is kept, until when).
	RetentionDays map[string]int
	Now           func() time.Time
	// Crash, if set, is called after each step of a run with its name
	// (export.claimed, export.stored, export.recorded): the kill -9 tests
	// stop the process there.
	Crash func(step string)
}

// Exports runs and records exports. Safe for concurrent use.
type Exports struct {
	d    ExportDeps
	cfg  ExportsConfig
	kick chan struct{}

	mu       sync.Mutex // guards progress
	progress map[string]*exportHeartbeat
	// limit is the most events an export by a role may hold (the server
	// sets it from serve.roles and exports.max_events).
	limit func(Role) int
}

// NewExports returns the register and runner.
func NewExports(cfg ExportsConfig, d ExportDeps) *Exports {
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Exports{d: d, cfg: cfg, kick: make(chan struct{}, 1), progress: map[string]*exportHeartbeat{}, limit: func(Role) int { return cfg.MaxEvents }}
}

func exportDir(id string) string { return ExportPrefix + id + "/" }

// newExportID is exp-<yyyymmdd>-<12 hex>.
func newExportID(now time.Time) string {
	var b [6]byte
	rand.Read(b[:])
	return "exp-" + now.UTC().Format("20060102") + "-" + hex.EncodeToString(b[:])
}

func validExportID(id string) bool {
	if len(id) != len("exp-20260101-")+12 || !strings.HasPrefix(id, "exp-") {
		return false
	}
	for _, c := range id[4:] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c == '-') {
			return false
		}
	}
	return true
}

// identityKey names an identity in an object name.
func identityKey(name string) string {
	s := sha256.Sum256([]byte(name))
	return hex.EncodeToString(s[:8])
}

func (x *Exports) write(ctx context.Context, name string, v any, overwrite bool) error {
	b, err := signed.Encode(exportLabel, v, x.d.Signer)
	if err != nil {
		return err
	}
	_, err = x.d.Store.Write(ctx, name, b, store.WriteOptions{Overwrite: overwrite})
	return err
}

func (x *Exports) read(ctx context.Context, name string, v any) error {
	rc, err := x.d.Store.Get(ctx, name)
	if err != nil {
		return err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		return err
	}
	if _, err := signed.Decode(b, exportLabel, x.d.Trusted, v); err != nil {
		return fmt.Errorf("export record %s: %w", name, err)
	}
	return nil
}

// ErrNoExport is an export ID that names nothing.
var ErrNoExport = errors.New("no such export")

// Get reads an export's state from its objects.
func (x *Exports) Get(ctx context.Context, id string) (*Export, error) {
	if !validExportID(id) {
		return nil, fmt.Errorf("export %q: %w", id, ErrNoExport)
	}
	e := &Export{ID: id, Approvals: []exportApproval{}, Downloads: []exportApproval{}}
	var beats []exportHeartbeat
	found := false
	for o, err := range x.d.Store.List(ctx, exportDir(id)) {
		if err != nil {
			return nil, err
		}
		base := strings.TrimPrefix(o.Name, exportDir(id))
		switch {
		case base == "request.json":
			found = true
			if err := x.read(ctx, o.Name, &e.req); err != nil {
				return nil, err
			}
		case strings.HasPrefix(base, "approval-"):
			var a exportApproval
			if err := x.read(ctx, o.Name, &a); err != nil {
				return nil, err
			}
			e.Approvals = append(e.Approvals, a)
		case strings.HasPrefix(base, "attempt-"):
			var a exportAttempt
			if err := x.read(ctx, o.Name, &a); err != nil {
				return nil, err
			}
			e.attempts = append(e.attempts, a)
		case strings.HasPrefix(base, "heartbeat-"):
			// Its run rewrites it while we read: a read that meets a new
			// version (the store's If-Match fails) is tried again.
			var h exportHeartbeat
			var err error
			for range 5 {
				if err = x.read(ctx, o.Name, &h); err == nil {
					break
				}
			}
			if err != nil {
				return nil, err
			}
			beats = append(beats, h)
		case base == "result.json":
			e.Result = &ExportResult{}
			if err := x.read(ctx, o.Name, e.Result); err != nil {
				return nil, err
			}
		case strings.HasPrefix(base, "downloads/"):
			var d exportApproval
			if err := x.read(ctx, o.Name, &d); err != nil {
				return nil, err
			}
			e.Downloads = append(e.Downloads, d)
		}
	}
	if !found {
		return nil, fmt.Errorf("export %s: %w", id, ErrNoExport)
	}
	if e.req.ID != id {
		return nil, fmt.Errorf("export record %srequest.json names export %q", exportDir(id), e.req.ID)
	}
	r := e.req
	e.Kind, e.RightsRequest = r.Kind, r.Rights
	e.Case, e.RequestedBy, e.RequestedAt, e.Purpose, e.Filters, e.TenantScope, e.ApprovalsNeeded = r.Case, r.By, r.At, r.Request.Purpose, r.Attrs, r.TenantScope, r.Approvals
	slices.SortFunc(e.Approvals, func(a, b exportApproval) int { return a.At.Compare(b.At) })
	slices.SortFunc(e.Downloads, func(a, b exportApproval) int { return a.At.Compare(b.At) })
	slices.SortFunc(e.attempts, func(a, b exportAttempt) int { return a.N - b.N })
	if n := len(e.attempts); n > 0 {
		for i := range beats {
			if beats[i].N == e.attempts[n-1].N {
				e.Progress = &beats[i]
			}
		}
	}
	x.mu.Lock()
	if p := x.progress[id]; p != nil {
		cp := *p
		e.Progress = &cp // this instance runs it: fresher than the heartbeat
	}
	x.mu.Unlock()
	switch {
	case e.Result != nil:
		e.Status = e.Result.Status
	case 1+len(e.Approvals) < e.ApprovalsNeeded:
		e.Status = ExportPending
	case len(e.attempts) > 0:
		e.Status = ExportRunning
	default:
		e.Status = ExportQueued
	}
	return e, nil
}

// List returns the exports, of one case or all, oldest first.
func (x *Exports) List(ctx context.Context, caseID string) ([]Export, error) {
	ids := map[string]bool{}
	for o, err := range x.d.Store.List(ctx, ExportPrefix) {
		if err != nil {
			return nil, err
		}
		id, _, ok := strings.Cut(strings.TrimPrefix(o.Name, ExportPrefix), "/")
		if ok {
			ids[id] = true
		}
	}
	out := []Export{}
	for id := range ids {
		e, err := x.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if caseID == "" || e.Case == caseID {
			out = append(out, *e)
		}
	}
	sortExports(out)
	return out, nil
}

// sortExports orders exports oldest first.
func sortExports(es []Export) {
	slices.SortFunc(es, func(a, b Export) int {
		return cmp.Or(a.RequestedAt.Compare(b.RequestedAt), strings.Compare(a.ID, b.ID))
	})
}

// Create records a new disclosure export, once its audit event is
// acknowledged, and starts it if it needs no other approval.
func (x *Exports) Create(ctx context.Context, au announcer, id Identity, req ExportRequest, clientAddr string) (*Export, error) {
	now := x.d.Now().UTC().Truncate(time.Second)
	return x.create(ctx, au, id, exportRequest{ID: newExportID(now), Kind: KindDisclosure, Case: req.Case, Request: req, By: id.Name, Role: id.Role,
		TenantScope: id.Tenants, Approvals: x.cfg.Approvals, At: now, Attrs: req.attrs()}, clientAddr)
}

// Export kinds.
const (
	KindDisclosure    = "disclosure"
	KindSubjectAccess = "subject-access"
)

// CreateSubject records a subject-access export for a rights request:
// every event about its subject (login or tenant), of every class and
// kind but the access log, over the whole retention window (maxDays).
func (x *Exports) CreateSubject(ctx context.Context, au announcer, id Identity, rr *RightsRequest, maxDays int, clientAddr string) (*Export, error) {
	now := x.d.Now().UTC().Truncate(time.Second)
	req := ExportRequest{QueryRequest: QueryRequest{Purpose: fmt.Sprintf("rights request %s (%s)", rr.ID, rr.Right),
		From: now.Truncate(24*time.Hour).AddDate(0, 0, -maxDays-1).Format(time.RFC3339), To: now.Add(time.Hour).Format(time.RFC3339),
		Login: rr.SubjectLogin, Tenant: rr.SubjectTenant}, Reference: rr.ID}
	return x.create(ctx, au, id, exportRequest{ID: newExportID(now), Kind: KindSubjectAccess, Rights: rr.ID, Request: req, By: id.Name, Role: id.Role,
		TenantScope: id.Tenants, Approvals: x.cfg.Approvals, At: now, Attrs: req.attrs()}, clientAddr)
}

func (x *Exports) create(ctx context.Context, au announcer, id Identity, r exportRequest, clientAddr string) (*Export, error) {
	req := r.Request
	actx, cancel := context.WithTimeout(ctx, auditTimeout)
	defer cancel()
	if err := au.Announce(actx, announce.Event{Kind: event.KindAccessAudit, Action: "export.create", Time: r.At, IDParts: []string{"export", r.ID, "create"},
		Login: id.Name, Purpose: req.Purpose, Attrs: map[string]any{"export": r.ID, "export_kind": r.Kind, "case": r.Case, "rights_request": r.Rights, "role": string(id.Role), "filters": r.Attrs,
			"tenant_scope": scopeAttr(id), "client": clientAddr, "approvals_needed": r.Approvals, "authority": req.Authority, "legal_basis": req.LegalBasis}}); err != nil {
		return nil, fmt.Errorf("%w: %v", errUnrecorded, err)
	}
	if err := x.write(ctx, exportDir(r.ID)+"request.json", r, false); err != nil {
		return nil, err
	}
	// The runner starts once the export is read back for the answer, so
	// the answer usually leaves first; a client that loses it anyway
	// finds the export in its case's register.
	e, err := x.Get(ctx, r.ID)
	x.wake()
	return e, err
}

// ErrSelfApproval and ErrApproved are the refusals of Approve.
var (
	ErrSelfApproval = errors.New("the requester of an export cannot approve it: a second identity must")
	ErrApproved     = errors.New("this identity has already approved this export")
	ErrNotPending   = errors.New("the export is not waiting for approval")
)

// Approve records id's approval of an export, once its audit event is
// acknowledged; the last approval needed starts it.
func (x *Exports) Approve(ctx context.Context, au announcer, exportID string, id Identity) (*Export, error) {
	e, err := x.Get(ctx, exportID)
	if err != nil {
		return nil, err
	}
	switch {
	case e.RequestedBy == id.Name:
		return nil, ErrSelfApproval
	case slices.ContainsFunc(e.Approvals, func(a exportApproval) bool { return a.By == id.Name }):
		return nil, ErrApproved
	case e.Status != ExportPending:
		return nil, fmt.Errorf("%w (it is %s)", ErrNotPending, e.Status)
	}
	now := x.d.Now().UTC().Truncate(time.Second)
	actx, cancel := context.WithTimeout(ctx, auditTimeout)
	defer cancel()
	if err := au.Announce(actx, announce.Event{Kind: event.KindAccessAudit, Action: "export.approve", Time: now, IDParts: []string{"export", e.ID, "approve", id.Name},
		Login: id.Name, Purpose: e.Purpose, Attrs: map[string]any{"export": e.ID, "case": e.Case, "role": string(id.Role), "requested_by": e.RequestedBy}}); err != nil {
		return nil, fmt.Errorf("%w: %v", errUnrecorded, err)
	}
	err = x.write(ctx, exportDir(e.ID)+"approval-"+identityKey(id.Name)+".json", exportApproval{By: id.Name, At: now}, false)
	if errors.Is(err, store.ErrExists) {
		return nil, ErrApproved // a concurrent approval by the same identity
	}
	if err != nil {
		return nil, err
	}
	x.wake()
	return x.Get(ctx, e.ID)
}

func (x *Exports) wake() {
	select {
	case x.kick <- struct{}{}:
	default:
	}
}

func (x *Exports) crash(step string) {
	if x.d.Crash != nil {
		x.d.Crash(step)
	}
}

// An attempt silent for ExportsConfig.TakeoverAfter (its instance died) is
// taken over by another; a running attempt writes its heartbeat six times
// as often. Unfinished exports are looked for every scanEvery, and at once
// when one is created or approved here (scanEvery).
func (x *Exports) scanEvery() time.Duration { return min(30*time.Second, x.cfg.TakeoverAfter/2) }

func (x *Exports) heartbeatEvery() time.Duration { return x.cfg.TakeoverAfter / 6 }

// Run runs queued exports until ctx ends: at once when one is created or
// approved here, and every scanEvery for those queued elsewhere or whose
// attempt went silent (its instance died). One export at a time per
// instance. It returns when ctx ends and the export running has stopped.
func (x *Exports) Run(ctx context.Context, eng engine, au announcer, log *zap.Logger) {
	t := time.NewTicker(x.scanEvery())
	defer t.Stop()
	for {
		x.runQueued(ctx, eng, au, log)
		select {
		case <-ctx.Done():
			return
		case <-x.kick:
		case <-t.C:
		}
	}
}

// unfinished lists the exports without a result, oldest first: one LIST
// of the register, and reads of those exports' records only.
func (x *Exports) unfinished(ctx context.Context) ([]Export, error) {
	ids, done := map[string]bool{}, map[string]bool{}
	for o, err := range x.d.Store.List(ctx, ExportPrefix) {
		if err != nil {
			return nil, err
		}
		id, base, ok := strings.Cut(strings.TrimPrefix(o.Name, ExportPrefix), "/")
		if !ok {
			continue
		}
		ids[id] = true
		done[id] = done[id] || base == "result.json"
	}
	var out []Export
	for id := range ids {
		if done[id] {
			continue
		}
		e, err := x.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, *e)
	}
	sortExports(out)
	return out, nil
}

func (x *Exports) runQueued(ctx context.Context, eng engine, au announcer, log *zap.Logger) {
	list, err := x.unfinished(ctx)
	if err != nil {
		if ctx.Err() == nil {
			log.Error("cannot list exports", zap.Error(err))
		}
		return
	}
	for _, e := range list {
		if ctx.Err() != nil {
			return
		}
		stale := e.Status == ExportRunning && (e.Progress == nil && x.d.Now().Sub(e.attempts[len(e.attempts)-1].At) > x.cfg.TakeoverAfter ||
			e.Progress != nil && x.d.Now().Sub(e.Progress.At) > x.cfg.TakeoverAfter)
		if e.Status != ExportQueued && !stale {
			continue
		}
		n := len(e.attempts) + 1
		err := x.write(ctx, fmt.Sprintf("%sattempt-%04d.json", exportDir(e.ID), n), exportAttempt{N: n, Instance: x.d.Instance, At: x.d.Now().UTC()}, false)
		if errors.Is(err, store.ErrExists) {
			continue // another instance took it
		}
		if err != nil {
			log.Error("cannot claim export", zap.String("export", e.ID), zap.Error(err))
			continue
		}
		x.crash("export.claimed")
		x.runOne(ctx, eng, au, log, &e, n)
	}
}

// runOne runs attempt n of e and records its result.
func (x *Exports) runOne(ctx context.Context, eng engine, au announcer, log *zap.Logger, e *Export, n int) {
	log = log.With(zap.String("export", e.ID), zap.Int("attempt", n))
	log.Info("export started")
	hb := &exportHeartbeat{N: n, At: x.d.Now().UTC()}
	x.mu.Lock()
	x.progress[e.ID] = hb
	x.mu.Unlock()
	defer func() {
		x.mu.Lock()
		delete(x.progress, e.ID)
		x.mu.Unlock()
	}()
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the heartbeat, owned by this attempt
		defer wg.Done()
		t := time.NewTicker(x.heartbeatEvery())
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
			}
			x.mu.Lock()
			hb.At = x.d.Now().UTC()
			beat := *hb
			x.mu.Unlock()
			if err := x.write(rctx, fmt.Sprintf("%sheartbeat-%04d.json", exportDir(e.ID), n), beat, true); err != nil && rctx.Err() == nil {
				log.Warn("cannot write the export's heartbeat", zap.Error(err))
			}
		}
	}()
	res, err := x.produce(rctx, eng, e, n, hb)
	cancel()
	wg.Wait()
	if ctx.Err() != nil {
		log.Info("export interrupted: another instance, or this one after a restart, takes it over", zap.Error(err))
		return
	}
	res.Attempt, res.At = n, x.d.Now().UTC()
	if err != nil {
		res.Status, res.Error = ExportFailed, err.Error()
		log.Warn("export failed", zap.Error(err))
	} else {
		res.Status = ExportReady
		log.Info("export ready", zap.Int64("events", res.Events), zap.Int64("bytes", res.Size))
	}
	// The outcome is an audit event too; then the result record.
	actx, acancel := context.WithTimeout(ctx, 30*time.Second)
	if aerr := au.Announce(actx, announce.Event{Kind: event.KindAccessAudit, Action: "export." + res.Status, Time: res.At, IDParts: []string{"export", e.ID, res.Status},
		Login: e.RequestedBy, Purpose: e.Purpose, Attrs: map[string]any{"export": e.ID, "case": e.Case, "events": res.Events, "segments": res.Segments,
			"sha256": res.SHA256, "error": res.Error, "attempt": n}}); aerr != nil {
		log.Error("the export's outcome event was not acknowledged", zap.Error(aerr))
	}
	acancel()
	if err := x.write(ctx, exportDir(e.ID)+"result.json", res, false); err != nil && !errors.Is(err, store.ErrExists) {
		log.Error("cannot record the export's result", zap.Error(err))
	}
	x.crash("export.recorded")
}

// filter is the query an export runs: a disclosure's as checked when it
// was created (the role's range then); a subject export's over the whole
// retention window, bound to its rights request instead of a case.
func (r *exportRequest) filter() (query.Filter, error) {
	id := Identity{Name: r.By, Role: r.Role, Tenants: r.TenantScope}
	if r.Kind != KindSubjectAccess {
		return r.Request.filter(id, 100*365*24*time.Hour)
	}
	q := r.Request.QueryRequest
	q.Case = r.Rights // the binding, for the checks filter makes
	return q.filter(id, 100*365*24*time.Hour)
}

// produce runs the query into a package, sealed into a temporary file,
// then stores it.
func (x *Exports) produce(ctx context.Context, eng engine, e *Export, n int, hb *exportHeartbeat) (ExportResult, error) {
	var res ExportResult
	r := e.req
	f, err := r.filter()
	if err != nil {
		return res, err
	}
	tmp, err := os.CreateTemp(x.d.TempDir, "custody-package-*.sealed")
	if err != nil {
		return res, err
	}
	os.Remove(tmp.Name())
	defer tmp.Close()

	// The package's data key, sealed to the current key of the class.
	name := fmt.Sprintf("%s%s-%04d.zip.sealed", PackagePrefix, e.ID, n)
	pk, err := x.d.Trusted.Current(x.d.Class, x.d.Now())
	if err != nil {
		return res, fmt.Errorf("no public key to seal the package with: %w", err)
	}
	dek := make([]byte, seal.KeySize)
	rand.Read(dek)
	var prefix [seal.NoncePrefixSize]byte
	rand.Read(prefix[:])
	sealedKey, err := pk.Seal(packageAAD(name), dek)
	if err != nil {
		return res, err
	}
	hdr, _ := json.Marshal(packageHeader{V: 1, KeyID: pk.ID, SealedKey: sealedKey, Prefix: prefix[:]})
	bw := bufio.NewWriterSize(tmp, 1<<20)
	bw.Write(append(hdr, '\n'))
	sw, err := seal.NewWriter(bw, dek, prefix, packageAAD(name))
	if err != nil {
		return res, err
	}
	zipHash := sha256.New()
	var zipSize countingWriter
	pw, err := export.NewWriter(io.MultiWriter(sw, zipHash, &zipSize), x.d.TempDir, x.d.Now())
	if err != nil {
		return res, err
	}
	var mu sync.Mutex
	contributed := map[string]int64{}
	stats, err := eng.Run(ctx, f, query.Options{SpillDir: x.d.TempDir, Strict: true, MemoryBudget: int64(x.cfg.MemoryBudget), Contributed: func(seg string, k int) {
		mu.Lock()
		contributed[seg] += int64(k)
		mu.Unlock()
	}}, func(line []byte) error {
		if err := pw.Add(line); err != nil {
			return err
		}
		x.mu.Lock()
		hb.Events++
		events := hb.Events
		x.mu.Unlock()
		if limit := x.limit(r.Role); events > int64(limit) {
			return fmt.Errorf("the export holds more than the %d events a %s export may (serve.exports.max_events, serve.roles): narrow the filters or the range", limit, r.Role)
		}
		return nil
	})
	res.Events = stats.Matched
	if err != nil {
		return res, err
	}
	sources, err := export.Sources(ctx, x.d.Store, x.d.Trusted, contributed)
	if err != nil {
		return res, err
	}
	approvers := make([]string, len(e.Approvals))
	for i, a := range e.Approvals {
		approvers[i] = a.By
	}
	filters := map[string]string{}
	for k, v := range r.Attrs {
		if k != "from" && k != "to" {
			filters[k] = fmt.Sprint(v)
		}
	}
	m, err := pw.Close(export.Manifest{Kind: r.Kind, ID: e.ID, RetentionDays: x.d.RetentionDays,
		Request: export.Request{Case: r.Case, Authority: r.Request.Authority, LegalBasis: r.Request.LegalBasis, Reference: r.Request.Reference,
			Purpose: r.Request.Purpose, Requester: r.By, Approvers: approvers},
		Query:      export.Query{From: f.From, To: f.To, Filters: filters, TenantScope: r.TenantScope},
		Provenance: sources, Software: x.d.Software}, x.d.Signer)
	if err != nil {
		return res, err
	}
	if err := sw.Close(); err != nil {
		return res, err
	}
	if err := bw.Flush(); err != nil {
		return res, err
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return res, err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return res, err
	}
	lock := store.Lock{Mode: x.d.Mode, Until: x.d.Now().AddDate(0, 0, store.PackageDays)}
	if err := x.d.Store.Put(ctx, name, tmp, size, lock); err != nil {
		return res, fmt.Errorf("cannot store the package: %w", err)
	}
	x.crash("export.stored")
	res.Package, res.Size, res.SHA256 = name, int64(zipSize), hex.EncodeToString(zipHash.Sum(nil))
	res.Events, res.Segments = m.Counts.Events, len(sources)
	return res, nil
}

type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

// packageHeader is a sealed package's first line (docs/EXPORTS.md §6).
type packageHeader struct {
	V         int    `json:"v"`
	KeyID     string `json:"key_id"`
	SealedKey []byte `json:"sealed_key"`
	Prefix    []byte `json:"prefix"`
}

// ErrNotReady is a download of an export that has no package.
var ErrNotReady = errors.New("the export has no package (yet)")

// Open records id's download of the export's package, once its audit
// event is acknowledged, and returns the package's plaintext stream.
func (x *Exports) Open(ctx context.Context, au announcer, exportID string, id Identity, clientAddr string) (*Export, io.ReadCloser, error) {
	e, err := x.Get(ctx, exportID)
	if err != nil {
		return nil, nil, err
	}
	if e.Status != ExportReady {
		return e, nil, fmt.Errorf("%w: it is %s", ErrNotReady, e.Status)
	}
	now := x.d.Now().UTC()
	rid := newRequestID()
	actx, cancel := context.WithTimeout(ctx, auditTimeout)
	defer cancel()
	if err := au.Announce(actx, announce.Event{Kind: event.KindAccessAudit, Action: "export.download", Time: now, IDParts: []string{"export", e.ID, "download", rid},
		Login: id.Name, Purpose: e.Purpose, Attrs: map[string]any{"export": e.ID, "case": e.Case, "role": string(id.Role), "sha256": e.Result.SHA256, "client": clientAddr, "request_id": rid}}); err != nil {
		return e, nil, fmt.Errorf("%w: %v", errUnrecorded, err)
	}
	if err := x.write(ctx, fmt.Sprintf("%sdownloads/%s-%s.json", exportDir(e.ID), now.Format("20060102T150405.000000000Z"), rid), exportApproval{By: id.Name, At: now}, false); err != nil {
		return e, nil, err
	}
	rc, err := x.openPackage(ctx, e.Result.Package)
	return e, rc, err
}

func (x *Exports) openPackage(ctx context.Context, name string) (io.ReadCloser, error) {
	rc, err := x.d.Store.Get(ctx, name)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%w: the package was deleted (packages are kept %d days)", ErrNotReady, store.PackageDays)
		}
		return nil, err
	}
	br := bufio.NewReaderSize(rc, 1<<20)
	line, err := br.ReadBytes('\n')
	var h packageHeader
	if err == nil {
		err = json.Unmarshal(line, &h)
	}
	if err != nil || h.V != 1 || len(h.Prefix) != seal.NoncePrefixSize {
		rc.Close()
		return nil, fmt.Errorf("package %s: not a sealed package", name)
	}
	dek, err := x.d.Keys.OpenKey(h.KeyID, packageAAD(name), h.SealedKey)
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("package %s: cannot open its key %s: %w", name, h.KeyID, err)
	}
	sr, err := seal.NewReader(br, dek, [seal.NoncePrefixSize]byte(h.Prefix), packageAAD(name))
	if err != nil {
		rc.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{sr, rc}, nil
}
