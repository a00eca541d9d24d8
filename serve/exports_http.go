package serve

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// createExport is POST /v1/exports: checked like a query, bound to an open
// case, recorded once its audit event is acknowledged; it runs in the
// background (GET /v1/exports/{id} shows its progress).
func (s *Server) createExport(w http.ResponseWriter, r *http.Request, id Identity) {
	if s.exports == nil {
		writeError(w, http.StatusServiceUnavailable, "exports are not configured on this server")
		return
	}
	var req ExportRequest
	if err := decodeStrict(r, &req); err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	if req.Limit != 0 {
		writeError(w, http.StatusBadRequest, "limit: an export is complete or fails; it takes no limit (serve.exports.max_events bounds it)")
		return
	}
	if req.Progress {
		writeError(w, http.StatusBadRequest, "progress: an export runs in the background; GET /v1/exports/{id} shows its progress")
		return
	}
	if req.IP == "" && req.Login == "" && req.Kind == "" && req.Tenant == "" && req.App == "" && req.Repo == "" && req.Session == "" {
		writeError(w, http.StatusBadRequest, "filters: an export needs at least one of ip, login, kind, tenant, app, repo or session: a disclosure answers a request about someone or something, never the whole archive")
		return
	}
	maxRange, _ := s.cfg.limits(id.Role)
	if _, err := req.filter(id, maxRange); err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	if !s.openCase(w, r, req.Case) {
		return
	}
	e, err := s.exports.Create(r.Context(), s.audit, id, req, clientAddr(r))
	switch {
	case errors.Is(err, errUnrecorded):
		s.denied.WithLabelValues("unrecorded").Inc()
		s.log.Error("export refused: its audit event was not acknowledged", zap.Error(err))
		writeError(w, http.StatusServiceUnavailable, "the export cannot be recorded (Kafka did not acknowledge the audit event); nothing was created")
	case err != nil:
		s.log.Error("cannot create export", zap.Error(err))
		writeError(w, http.StatusInternalServerError, "cannot create the export")
	default:
		writeJSON(w, http.StatusCreated, e)
	}
}

// openCase answers 403 (and false) unless the case exists and is open.
func (s *Server) openCase(w http.ResponseWriter, r *http.Request, caseID string) bool {
	c, err := s.cases.Get(r.Context(), caseID)
	switch {
	case errors.Is(err, ErrNoCase):
		writeError(w, http.StatusForbidden, fmt.Sprintf("case %q does not exist: every read names an open case", caseID))
	case err != nil:
		s.log.Error("cannot read case", zap.String("case", caseID), zap.Error(err))
		writeError(w, http.StatusServiceUnavailable, "cannot read the case register")
	case !c.Open():
		writeError(w, http.StatusForbidden, fmt.Sprintf("case %s was closed on %s", c.ID, c.ClosedAt.Format(time.RFC3339)))
	default:
		return true
	}
	return false
}

// listExports is GET /v1/exports[?case=ID]: the disclosure register.
func (s *Server) listExports(w http.ResponseWriter, r *http.Request, _ Identity) {
	if s.exports == nil {
		writeJSON(w, http.StatusOK, map[string]any{"exports": []Export{}})
		return
	}
	list, err := s.exports.List(r.Context(), r.URL.Query().Get("case"))
	if err != nil {
		s.log.Error("cannot list exports", zap.Error(err))
		writeError(w, http.StatusInternalServerError, "cannot list exports")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"exports": list})
}

func (s *Server) exportError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNoExport):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrSelfApproval), errors.Is(err, ErrApproved):
		writeError(w, http.StatusForbidden, err.Error())
	case errors.Is(err, ErrNotPending), errors.Is(err, ErrNotReady):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, errUnrecorded):
		s.denied.WithLabelValues("unrecorded").Inc()
		writeError(w, http.StatusServiceUnavailable, "the action cannot be recorded (Kafka did not acknowledge the audit event); nothing was done")
	default:
		s.log.Error("export request failed", zap.Error(err))
		writeError(w, http.StatusInternalServerError, "the export request failed")
	}
}

// getExport is GET /v1/exports/{id}: status, approvals, progress, result.
func (s *Server) getExport(w http.ResponseWriter, r *http.Request, _ Identity) {
	if s.exports == nil {
		writeError(w, http.StatusNotFound, ErrNoExport.Error())
		return
	}
	e, err := s.exports.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		s.exportError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

// approveExport is POST /v1/exports/{id}/approve.
func (s *Server) approveExport(w http.ResponseWriter, r *http.Request, id Identity) {
	if s.exports == nil {
		writeError(w, http.StatusNotFound, ErrNoExport.Error())
		return
	}
	e, err := s.exports.Approve(r.Context(), s.audit, r.PathValue("id"), id)
	if err != nil {
		s.exportError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

// downloadExport is GET /v1/exports/{id}/package: the zip, once the
// download's audit event is acknowledged.
func (s *Server) downloadExport(w http.ResponseWriter, r *http.Request, id Identity) {
	if s.exports == nil {
		writeError(w, http.StatusNotFound, ErrNoExport.Error())
		return
	}
	e, rc, err := s.exports.Open(r.Context(), s.audit, r.PathValue("id"), id, clientAddr(r))
	if err != nil {
		s.exportError(w, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.zip"`, e.ID))
	w.Header().Set("Content-Length", strconv.FormatInt(e.Result.Size, 10))
	w.Header().Set("X-Package-Sha256", e.Result.SHA256)
	if n, err := io.Copy(w, rc); err != nil || n != e.Result.Size {
		// The status is gone; the client sees a short body (and the
		// length and hash it was promised).
		s.log.Error("package download cut short", zap.String("export", e.ID), zap.Int64("sent", n), zap.Error(err))
	}
}
