package agent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/ingest"
	"github.com/custodylog/custody/ingest/logparse"
)

// submitter is what the agent needs from an ingest.Sink.
type submitter interface {
	Submit(ctx context.Context, recs []ingest.Record) error
}

// Agent tails the configured files. Run owns everything it opens.
type Agent struct {
	cfg Config
	// opts is the template of every line's event.Options: limits, class
	// and source; convert fills in the time, tenants and ID salt.
	opts event.Options
	sink submitter
	log  *zap.Logger
	loc  *time.Location
	now  func() time.Time

	lines    *prometheus.CounterVec
	shipped  prometheus.Counter
	lagBytes *prometheus.GaugeVec
}

const (
	batchLines = 2000
	batchBytes = 1 << 20
)

// New returns an agent writing through sink.
func New(cfg Config, opts event.Options, sink submitter, log *zap.Logger, reg prometheus.Registerer) (*Agent, error) {
	loc, err := time.LoadLocation(cfg.Timezone)
	if err != nil {
		return nil, fmt.Errorf("agent.timezone: %w", err)
	}
	a := &Agent{cfg: cfg, opts: opts, sink: sink, log: log, loc: loc, now: time.Now,
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custody_agent_lines_total", Help: "Lines read, by file and outcome (shipped, invalid, ignored)."},
			[]string{"file", "result"}),
		shipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "custody_agent_events_total", Help: "Events acknowledged by Kafka or the spool."}),
		lagBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "custody_agent_unshipped_bytes", Help: "Bytes of each file not yet shipped."},
			[]string{"file"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{a.lines, a.shipped, a.lagBytes} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return a, nil
}

// Run tails until ctx ends. A batch of lines is committed (its position
// saved) only after the sink acknowledged it; while the sink refuses
// (spool full) the agent retries the same batch and reads nothing new.
func (a *Agent) Run(ctx context.Context) error {
	positions, err := loadPositions(a.cfg.PositionsFile)
	if err != nil {
		return err
	}
	tails := make([]*tailer, len(a.cfg.Files))
	for i, f := range a.cfg.Files {
		tails[i] = &tailer{path: f.Path}
		var pos *position
		if p, ok := positions[f.Path]; ok {
			pos = &p
		}
		if err := tails[i].open(pos); err != nil {
			return err
		}
		defer tails[i].close()
	}
	for {
		busy := false
		for i, t := range tails {
			n, err := a.shipBatch(ctx, a.cfg.Files[i], t)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if n > 0 {
				busy = true
				positions[t.path] = t.position()
				if err := savePositions(a.cfg.PositionsFile, positions); err != nil {
					return err
				}
			}
		}
		if !busy {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(a.cfg.PollInterval):
			}
		}
	}
}

// shipBatch reads one batch from t, converts and submits it, and commits.
// It returns the number of lines consumed.
func (a *Agent) shipBatch(ctx context.Context, f File, t *tailer) (int, error) {
	lines, end, err := t.read(batchLines, batchBytes)
	if err != nil || len(lines) == 0 {
		return 0, err
	}
	recs := make([]ingest.Record, 0, len(lines))
	for _, l := range lines {
		e, err := a.convert(f, t.id, l)
		switch {
		case errors.Is(err, logparse.ErrIgnored):
			a.lines.WithLabelValues(f.Path, "ignored").Inc()
		case err != nil:
			a.lines.WithLabelValues(f.Path, "invalid").Inc()
			a.log.Warn("rejected line", zap.String("file", f.Path), zap.Int64("offset", l.off), zap.Error(err))
		default:
			a.lines.WithLabelValues(f.Path, "shipped").Inc()
			recs = append(recs, ingest.RecordOf(e))
		}
	}
	backoff := 100 * time.Millisecond
	for {
		err := a.sink.Submit(ctx, recs)
		if err == nil {
			break
		}
		// Backpressure: keep the batch, read nothing new, try again.
		a.log.Warn("cannot ship batch; retrying", zap.String("file", f.Path), zap.Int("events", len(recs)), zap.Error(err))
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	a.shipped.Add(float64(len(recs)))
	t.advance(end)
	if fi, err := t.f.Stat(); err == nil {
		a.lagBytes.WithLabelValues(f.Path).Set(float64(fi.Size() - end))
	}
	return len(lines), nil
}

// convert turns one line into an event. Its ID derives from the file's
// identity and the line's offset, so a line re-read after a crash keeps
// its ID.
func (a *Agent) convert(f File, id fileID, l line) (*event.Event, error) {
	tenants := map[string]bool{}
	if f.Tenant != "" {
		tenants[f.Tenant] = true
	}
	for _, tn := range f.Tenants {
		tenants[tn] = true
	}
	o := a.opts
	o.Now, o.Source, o.Tenants = a.now(), a.cfg.Name, tenants
	o.IDSalt = []byte(strconv.FormatUint(id.Dev, 10) + ":" + strconv.FormatUint(id.Ino, 10) + ":" + strconv.FormatInt(l.off, 10))
	var p logparse.Event
	switch f.Format {
	case "json":
		return event.Decode(l.data, o)
	case "combined":
		acc, err := logparse.ParseCombined(string(l.data))
		if err != nil {
			return nil, err
		}
		p = acc.Event(f.Tenant, f.App, "")
	case "sshd":
		s, err := logparse.ParseSSHD(string(l.data), a.now(), a.loc)
		if err != nil {
			return nil, err
		}
		p = s.Event(f.Tenant, f.App)
	default:
		return nil, fmt.Errorf("unknown format %q", f.Format)
	}
	return event.Decode(p.JSON(), o)
}
