package serve

import (
	"errors"
	"net/http"

	"go.uber.org/zap"
)

func (s *Server) rightsError(w http.ResponseWriter, err error) {
	var re *requestError
	switch {
	case errors.As(err, &re):
		writeError(w, re.code, re.msg)
	case errors.Is(err, ErrNoRequest):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrReplied):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, errUnrecorded):
		s.denied.WithLabelValues("unrecorded").Inc()
		writeError(w, http.StatusServiceUnavailable, "the step cannot be recorded (Kafka did not acknowledge its event); nothing was changed")
	default:
		s.log.Error("rights request failed", zap.Error(err))
		writeError(w, http.StatusInternalServerError, "the rights request failed")
	}
}

func (s *Server) rightsReady(w http.ResponseWriter) bool {
	if s.rights == nil {
		writeError(w, http.StatusServiceUnavailable, "the rights-request register is not configured on this server")
		return false
	}
	return true
}

// openRights is POST /v1/requests.
func (s *Server) openRights(w http.ResponseWriter, r *http.Request, id Identity) {
	if !s.rightsReady(w) {
		return
	}
	var b RightsRequestBody
	if err := decodeStrict(r, &b); err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	rr, err := s.rights.Open(r.Context(), id.Name, b)
	if err != nil {
		s.rightsError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, rr)
}

// listRights is GET /v1/requests: the register.
func (s *Server) listRights(w http.ResponseWriter, r *http.Request, _ Identity) {
	if !s.rightsReady(w) {
		return
	}
	list, err := s.rights.List(r.Context())
	if err != nil {
		s.rightsError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"requests": list})
}

// getRights is GET /v1/requests/{id}.
func (s *Server) getRights(w http.ResponseWriter, r *http.Request, _ Identity) {
	if !s.rightsReady(w) {
		return
	}
	rr, err := s.rights.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		s.rightsError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rr)
}

// replyRights is POST /v1/requests/{id}/reply.
func (s *Server) replyRights(w http.ResponseWriter, r *http.Request, id Identity) {
	if !s.rightsReady(w) {
		return
	}
	var b ReplyBody
	if err := decodeStrict(r, &b); err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	rr, err := s.rights.Reply(r.Context(), r.PathValue("id"), id.Name, b)
	if err != nil {
		s.rightsError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rr)
}

// closeRights is POST /v1/requests/{id}/close.
func (s *Server) closeRights(w http.ResponseWriter, r *http.Request, id Identity) {
	if !s.rightsReady(w) {
		return
	}
	rr, err := s.rights.Close(r.Context(), r.PathValue("id"), id.Name)
	if err != nil {
		s.rightsError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rr)
}

// SubjectExportRequest is the body of POST /v1/subject-exports.
type SubjectExportRequest struct {
	Request string `json:"request"` // the rights request's ID
}

// createSubjectExport is POST /v1/subject-exports: every event about a
// rights request's subject, for an access or portability request whose
// requester's identity was verified and that is not closed.
func (s *Server) createSubjectExport(w http.ResponseWriter, r *http.Request, id Identity) {
	if !s.rightsReady(w) || s.exports == nil {
		if s.exports == nil {
			writeError(w, http.StatusServiceUnavailable, "exports are not configured on this server")
		}
		return
	}
	var b SubjectExportRequest
	if err := decodeStrict(r, &b); err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	rr, err := s.rights.Get(r.Context(), b.Request)
	if err != nil {
		s.rightsError(w, err)
		return
	}
	switch {
	case rr.Right != "access" && rr.Right != "portability":
		writeError(w, http.StatusBadRequest, "request: "+rr.ID+" exercises the right of "+rr.Right+"; a subject export answers access or portability")
		return
	case !rr.IdentityVerified:
		writeError(w, http.StatusForbidden, "request: the requester's identity of "+rr.ID+" is not verified: nothing is disclosed before it is")
		return
	case !rr.ClosedAt.IsZero():
		writeError(w, http.StatusConflict, "request: "+rr.ID+" is closed")
		return
	}
	e, err := s.exports.CreateSubject(r.Context(), s.audit, id, rr, s.rights.ret.MaxDays(), clientAddr(r))
	if err != nil {
		s.exportError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, e)
}
