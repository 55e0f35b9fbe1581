package twofactor

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"strings"
	"time"
)

// TOTP parameters, the ones every common authenticator app supports. Key
// URIs announce them, so changing one here means changing KeyURI too.
const (
	// Digits is the length of a code.
	Digits = 6
	// Period is the length of a time step in seconds.
	Period = 30
	// Skew is how many steps before and after the current one are accepted,
	// to allow for clocks that drift and codes typed near a step boundary.
	Skew = 1
)

// Errors returned by Verify. Callers match them with errors.Is.
var (
	// ErrInvalidCode means the code is malformed or matches none of the
	// steps around the current time.
	ErrInvalidCode = errors.New("invalid one-time code")

	// ErrCodeUsed means the code is right, but for a time step that is not
	// later than the last one accepted: it was used already, or a later
	// code was.
	ErrCodeUsed = errors.New("one-time code already used")
)

// Step returns the TOTP time step that t falls in: the number of whole
// periods since the Unix epoch.
func Step(t time.Time) int64 {
	secs := t.Unix()
	step := secs / Period
	if secs%Period < 0 {
		step-- // round toward negative infinity before 1970
	}
	return step
}

// Code returns the code for secret at a time step (RFC 4226 HOTP with the
// step as counter, truncated to Digits decimal digits, zero-padded).
func Code(secret []byte, step int64) string {
	var counter [8]byte
	binary.BigEndian.PutUint64(counter[:], uint64(step))
	mac := hmac.New(sha1.New, secret)
	mac.Write(counter[:])
	sum := mac.Sum(nil)

	// Dynamic truncation: the low nibble of the last byte picks four bytes,
	// read as a 31-bit big-endian number.
	off := sum[len(sum)-1] & 0x0f
	bin := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff

	var out [Digits]byte
	for i := Digits - 1; i >= 0; i-- {
		out[i] = byte('0' + bin%10)
		bin /= 10
	}
	return string(out[:])
}

// NormalizeCode removes ASCII spaces anywhere in s and reports whether what
// is left is exactly Digits ASCII digits, which it then returns. Other white
// space and non-ASCII digits (full-width, Arabic-Indic and so on) make the
// code invalid.
func NormalizeCode(s string) (string, bool) {
	if strings.IndexByte(s, ' ') >= 0 {
		s = strings.ReplaceAll(s, " ", "")
	}
	if len(s) != Digits {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return "", false
		}
	}
	return s, true
}

// Verify checks code against secret for the steps from Skew before to Skew
// after the step of now, and returns the step it matched. A step that is not
// later than lastStep (the last step accepted for the user, 0 if none) is
// never accepted again; the caller records the returned step, with a write
// that only succeeds if it is still later than the stored one.
//
// When the code matches no step, Verify returns ErrInvalidCode; when it
// matches only steps up to lastStep, ErrCodeUsed. Codes are compared in
// constant time, and every candidate step is computed and compared whatever
// the outcome.
func Verify(secret []byte, code string, now time.Time, lastStep int64) (int64, error) {
	norm, ok := NormalizeCode(code)
	if !ok {
		return 0, ErrInvalidCode
	}

	// Of several matching steps (codes collide about once in a million),
	// take the latest, so that one code can never pass twice.
	current := Step(now)
	var step int64
	var matched, fresh bool
	for s := current - Skew; s <= current+Skew; s++ {
		if subtle.ConstantTimeCompare([]byte(Code(secret, s)), []byte(norm)) != 1 {
			continue
		}
		matched = true
		if s > lastStep {
			step, fresh = s, true
		}
	}

	switch {
	case fresh:
		return step, nil
	case matched:
		return 0, ErrCodeUsed
	default:
		return 0, ErrInvalidCode
	}
}
