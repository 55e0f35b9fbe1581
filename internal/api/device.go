package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/authsvc/authsvc/internal/model"
	"github.com/authsvc/authsvc/internal/session"
)

// deviceCookieAge is how long a device stays known after its last login.
const deviceCookieAge = 365 * 24 * time.Hour

const deviceKeyPurpose = "authsvc device cookies v1"

// deviceCookieName is the cookie that marks a browser that has signed in
// to an account before.
func (s *Server) deviceCookieName() string {
	if s.secure {
		return "__Host-authsvc_device"
	}
	return "authsvc_device"
}

// deviceMAC signs a device id for one user.
func (s *Server) deviceMAC(userID, deviceID string) string {
	m := hmac.New(sha256.New, s.deviceKey)
	m.Write([]byte(userID))
	m.Write([]byte{0})
	m.Write([]byte(deviceID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// knownDevice returns the id of the device cookie r carries for userID, ""
// if it carries none that this server signed for that user.
func (s *Server) knownDevice(r *http.Request, userID string) string {
	for _, c := range r.CookiesNamed(s.deviceCookieName()) {
		id, mac, ok := strings.Cut(c.Value, ".")
		if !ok || len(id) != 22 {
			continue
		}
		if hmac.Equal([]byte(mac), []byte(s.deviceMAC(userID, id))) {
			return id
		}
	}
	return ""
}

// rememberDevice sets the device cookie for userID after a good login.
func (s *Server) rememberDevice(w http.ResponseWriter, userID, deviceID string) {
	if deviceID == "" {
		deviceID = session.NewID()
	}
	http.SetCookie(w, &http.Cookie{
		Name: s.deviceCookieName(), Value: deviceID + "." + s.deviceMAC(userID, deviceID),
		Path: "/", MaxAge: int(deviceCookieAge / time.Second),
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode,
	})
}

// loginThrottle reads the failed-login state of u on the device and
// answers 429 while it must wait.
func (s *Server) loginThrottle(r *http.Request, u *model.User, device string) (
	model.LoginThrottle, error) {
	lt, err := s.store.LoginThrottle(r.Context(), u.ID, device)
	if err != nil {
		return lt, err
	}
	if wait := backoff(lt.Failures, lt.LastFailureAt, s.now()); wait > 0 {
		s.metrics.throttled.WithLabelValues("login_account").Inc()
		return lt, rateLimited(retryAfter(wait))
	}
	return lt, nil
}

// claimLogin counts a password attempt against u on the device before the
// password is checked; of concurrent attempts that saw the same count one
// goes ahead and the rest answer 429. A success resets the count.
func (s *Server) claimLogin(r *http.Request, u *model.User, device string,
	lt model.LoginThrottle) error {
	_, err := s.store.ClaimLoginAttempt(r.Context(), u.ID, device, lt.Failures, s.now())
	if errors.Is(err, model.ErrStale) {
		s.metrics.throttled.WithLabelValues("login_account").Inc()
		return rateLimited(1)
	}
	return err
}

// maxUnknownEmails bounds the failure counters kept for addresses that
// have no account.
const maxUnknownEmails = 100_000

// unknownEmails counts failed logins for addresses without an account, in
// memory, with the same doubling delay as real accounts, so that the delay
// does not reveal which addresses exist. Entries expire once their delay
// and a quiet period have passed.
type unknownEmails struct {
	mu      sync.Mutex
	entries map[string]*failures
}

type failures struct {
	count int
	last  time.Time
}

// unknownQuiet is how long an unknown address's counter outlives its last
// failure.
const unknownQuiet = 30 * time.Minute

// claim counts a failure for email unless it must wait, in one step, and
// returns the wait, zero when the failure was counted.
func (u *unknownEmails) claim(email string, now time.Time) time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	if f, ok := u.entries[email]; ok {
		if wait := backoff(f.count, f.last, now); wait > 0 {
			return wait
		}
	}
	u.failLocked(email, now)
	return 0
}

func (u *unknownEmails) failLocked(email string, now time.Time) {
	if u.entries == nil {
		u.entries = map[string]*failures{}
	}
	f, ok := u.entries[email]
	if !ok {
		if len(u.entries) >= maxUnknownEmails {
			for k, e := range u.entries {
				if now.Sub(e.last) > unknownQuiet+maxDelay {
					delete(u.entries, k)
				}
			}
			if len(u.entries) >= maxUnknownEmails {
				clear(u.entries)
			}
		}
		f = &failures{}
		u.entries[email] = f
	}
	f.count++
	f.last = now
}
