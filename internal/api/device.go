package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
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

// loginWait is how long a login for u from the device must still wait.
func (s *Server) loginWait(r *http.Request, u *model.User, device string) (time.Duration, error) {
	lt, err := s.store.LoginThrottle(r.Context(), u.ID, device)
	if err != nil {
		return 0, err
	}
	return backoff(lt.Failures, lt.LastFailureAt, s.now()), nil
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

func (u *unknownEmails) wait(email string, now time.Time) time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	f, ok := u.entries[email]
	if !ok {
		return 0
	}
	return backoff(f.count, f.last, now)
}

func (u *unknownEmails) fail(email string, now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
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
