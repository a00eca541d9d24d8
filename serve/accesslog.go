package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/announce"
	"github.com/custodylog/custody/query"
)

// recentReader reads what Kafka holds since a time; *kafkaconn.Client is
// one.
type recentReader interface {
	ReadSince(ctx context.Context, topic string, since time.Time, fn func(value []byte) error) error
}

// maxAccessLog bounds one access log answer (they are held in memory to
// merge the archive's and Kafka's).
const maxAccessLog = 100000

// auditLine is what the access log needs of an event.
type auditLine struct {
	ID     string         `json:"id"`
	Time   string         `json:"time"`
	Kind   string         `json:"kind"`
	Tenant string         `json:"tenant"`
	Login  string         `json:"login"`
	Attrs  map[string]any `json:"attrs"`
	t      time.Time
	raw    []byte
}

// accessLog answers GET /v1/access-log: the access_audit events of the
// range, from the archive and, for the last serve.access_log_recent, from
// Kafka (not yet archived), each once, in time order. Reading it is an
// access too, recorded first like a query.
func (s *Server) accessLog(w http.ResponseWriter, r *http.Request, id Identity) {
	p := r.URL.Query()
	from, err := query.ParseTime(p.Get("from"), false)
	if err != nil {
		writeError(w, http.StatusBadRequest, "from: "+err.Error())
		return
	}
	to, err := query.ParseTime(p.Get("to"), true)
	if err != nil {
		writeError(w, http.StatusBadRequest, "to: "+err.Error())
		return
	}
	if !from.Before(to) {
		writeError(w, http.StatusBadRequest, "from: is not before to")
		return
	}
	if to.Sub(from) > s.cfg.MaxRange {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("from, to: the range is %s; at most %s per request", to.Sub(from), s.cfg.MaxRange))
		return
	}
	limit := 1000
	if v := p.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxAccessLog {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit: %q is not 1-%d", v, maxAccessLog))
			return
		}
	}
	login, caseRef := p.Get("login"), p.Get("case")
	release, ok := s.acquire(id)
	if !ok {
		writeError(w, http.StatusTooManyRequests, "too many requests running (overall or for this identity); retry later")
		return
	}
	defer release()
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	rid := newRequestID()
	start := time.Now().UTC()
	filters := map[string]any{"from": p.Get("from"), "to": p.Get("to"), "login": login, "case": caseRef, "limit": limit}
	actx, acancel := context.WithTimeout(ctx, auditTimeout)
	err = s.audit.Announce(actx, announce.Event{Kind: event.KindAccessAudit, Action: "access-log", Time: start, IDParts: []string{"access", rid, "request"},
		Login: id.Name, Purpose: "access log review", Attrs: map[string]any{"phase": "request", "request_id": rid, "role": string(id.Role), "via": id.Via,
			"filters": filters, "client": clientAddr(r)}})
	acancel()
	if err != nil {
		s.log.Error("audit event not acknowledged: access log refused", zap.String("request_id", rid), zap.Error(err))
		writeError(w, http.StatusServiceUnavailable, errUnrecorded.Error())
		return
	}
	seen := map[string]bool{}
	var lines []auditLine
	keep := func(b []byte) bool {
		var l auditLine
		if json.Unmarshal(b, &l) != nil || l.Kind != string(event.KindAccessAudit) || l.Tenant != "platform" || seen[l.ID] {
			return false
		}
		t, err := event.ParseTime(l.Time)
		if err != nil || t.Before(from) || !t.Before(to) || login != "" && l.Login != login || caseRef != "" && l.Attrs["case"] != caseRef {
			return false
		}
		seen[l.ID], l.t, l.raw = true, t, bytes.Clone(b)
		lines = append(lines, l)
		return true
	}
	var archived, recent int64
	stats, runErr := s.eng.Run(ctx, query.Filter{From: from, To: to, Kind: string(event.KindAccessAudit), Tenant: "platform"}, query.Options{}, func(b []byte) error {
		if keep(b) {
			archived++
		}
		if len(lines) > maxAccessLog {
			return fmt.Errorf("more than %d access events in the range; narrow it", maxAccessLog)
		}
		return nil
	})
	since := start.Add(-s.recentWindow)
	if since.Before(from) {
		since = from
	}
	if runErr == nil && s.recent != nil && since.Before(to) {
		runErr = s.recent.ReadSince(ctx, s.topic, since, func(b []byte) error {
			if keep(b) {
				recent++
			}
			if len(lines) > maxAccessLog {
				return fmt.Errorf("more than %d access events in the range; narrow it", maxAccessLog)
			}
			return nil
		})
	}
	sort.Slice(lines, func(i, j int) bool {
		if !lines[i].t.Equal(lines[j].t) {
			return lines[i].t.Before(lines[j].t)
		}
		return lines[i].ID < lines[j].ID
	})
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Request-Id", rid)
	bw := bufio.NewWriterSize(w, 64<<10)
	n := 0
	for _, l := range lines {
		if n == limit {
			break
		}
		bw.Write(l.raw)
		bw.WriteByte('\n')
		n++
	}
	writeTrailer(bw, Trailer{RequestID: rid, Events: int64(n), Truncated: len(lines) > limit, Archived: archived, Recent: recent}, stats, runErr)
}
