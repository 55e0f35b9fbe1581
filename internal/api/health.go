package api

import (
	"context"
	"net/http"
	"time"
)

// healthz handles GET /healthz: the process is up. It never looks at the
// database, so a database outage does not get the process restarted.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz handles GET /readyz: 200 while the database answers and the
// server is not shutting down.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	select {
	case <-s.draining:
		return unavailable(5)
	default:
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		return unavailable(2)
	}
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// openapiDoc handles GET /openapi.yaml.
func (s *Server) openapiDoc(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/yaml")
	_, err := w.Write(s.openapi)
	return err
}
