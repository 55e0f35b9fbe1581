package api

import (
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/authsvc/authsvc/internal/model"
)

// listSessions handles GET /v1/sessions: the user's live sessions, newest
// first, the caller's own marked current.
func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) error {
	c, err := s.begin(w, r, rules{access: full})
	if err != nil {
		return err
	}
	list, err := s.store.ListSessions(r.Context(), c.user.ID, s.now())
	if err != nil {
		return err
	}
	out := make([]sessionJSON, 0, len(list))
	for _, ss := range list {
		j := sessionObject(ss)
		current := ss.ID == c.session.ID
		j.Current = &current
		out = append(out, j)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"sessions": out})
}

// deleteSession handles DELETE /v1/sessions/{id}. Revoking the caller's own
// session is a logout. Another user's session id is answered like an
// unknown one.
func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request) error {
	c, err := s.begin(w, r, rules{access: full})
	if err != nil {
		return err
	}
	id := chi.URLParam(r, "id")
	err = s.store.DeleteSession(r.Context(), c.user.ID, id)
	if errors.Is(err, model.ErrNotFound) {
		return errNotFound
	}
	if err != nil {
		return err
	}
	if id == c.session.ID {
		s.clearCookie(w)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteOtherSessions handles DELETE /v1/sessions: signs out everywhere else.
func (s *Server) deleteOtherSessions(w http.ResponseWriter, r *http.Request) error {
	c, err := s.begin(w, r, rules{access: full, recent: true})
	if err != nil {
		return err
	}
	if err := s.store.DeleteOtherSessions(r.Context(), c.user.ID, c.session.ID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
