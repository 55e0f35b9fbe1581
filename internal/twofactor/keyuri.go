// Package twofactor implements the second factor of authsvc: TOTP secrets
// (RFC 6238, HMAC-SHA1, six digits, 30-second steps), the otpauth key URIs
// and QR codes that carry them to authenticator apps, the checking of codes
// with replay protection, and single-use recovery codes.
//
// The package holds no state and reads no clock: callers pass the time and
// the last accepted time step, and store what Verify returns.
package twofactor

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// SecretSize is the length in bytes of a TOTP secret (160 bits, the size
// RFC 4226 recommends for HMAC-SHA1).
const SecretSize = 20

// MaxIssuerLength is the longest issuer, in runes, that CheckIssuer accepts.
const MaxIssuerLength = 64

// ErrInvalidIssuer is wrapped by every error of CheckIssuer.
var ErrInvalidIssuer = errors.New("invalid TOTP issuer")

// secretEncoding is upper-case base32 without padding, the form
// authenticator apps expect.
var secretEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewSecret returns a new random TOTP secret of SecretSize bytes.
func NewSecret() ([]byte, error) {
	secret := make([]byte, SecretSize)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("new totp secret: %w", err)
	}
	return secret, nil
}

// EncodeSecret returns secret as unpadded upper-case base32, as shown to
// users and put in key URIs: 32 characters for a SecretSize secret.
func EncodeSecret(secret []byte) string {
	return secretEncoding.EncodeToString(secret)
}

// CheckIssuer reports why issuer cannot name this service in authenticator
// apps, or nil if it can. It refuses an empty issuer, one longer than
// MaxIssuerLength runes, invalid UTF-8, control and bidirectional control
// characters, white space at either end, and ':' (which separates issuer
// and account in a key URI label). The message is written to follow the
// name of the setting it came from.
func CheckIssuer(issuer string) error {
	switch {
	case issuer == "":
		return fmt.Errorf("%w: must not be empty", ErrInvalidIssuer)
	case !utf8.ValidString(issuer):
		return fmt.Errorf("%w: must be valid UTF-8", ErrInvalidIssuer)
	case utf8.RuneCountInString(issuer) > MaxIssuerLength:
		return fmt.Errorf("%w: must be at most %d characters", ErrInvalidIssuer, MaxIssuerLength)
	case strings.Contains(issuer, ":"):
		return fmt.Errorf("%w: must not contain ':'", ErrInvalidIssuer)
	case strings.TrimSpace(issuer) != issuer:
		return fmt.Errorf("%w: must not start or end with white space", ErrInvalidIssuer)
	}
	for _, r := range issuer {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return fmt.Errorf("%w: must not contain control character %U", ErrInvalidIssuer, r)
		}
	}
	return nil
}

// KeyURI returns the otpauth URI that enrols secretBase32 in an
// authenticator app:
//
//	otpauth://totp/ISSUER:ACCOUNT?secret=S&issuer=ISSUER&algorithm=SHA1&digits=6&period=30
//
// Issuer, account and secret are percent-encoded per RFC 3986 (every byte
// but the unreserved characters, a space as %20), so that a standard URI
// parser gives back exactly the strings passed in. The issuer should have
// passed CheckIssuer; the account may contain anything, ':' included.
func KeyURI(issuer, account, secretBase32 string) string {
	var b strings.Builder
	b.Grow(96 + 3*(2*len(issuer)+len(account)+len(secretBase32)))

	b.WriteString("otpauth://totp/")
	escape(&b, issuer)
	b.WriteByte(':')
	escape(&b, account)
	b.WriteString("?secret=")
	escape(&b, secretBase32)
	b.WriteString("&issuer=")
	escape(&b, issuer)
	b.WriteString("&algorithm=SHA1&digits=6&period=30")
	return b.String()
}

// escape writes s to b with every byte outside RFC 3986's unreserved set
// (ALPHA, DIGIT, '-', '.', '_', '~') as %XX. Unlike url.QueryEscape it never
// writes '+' for a space, which some apps would show as a plus sign.
func escape(b *strings.Builder, s string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0x0f])
	}
}

// unreserved reports whether c may appear in a URI component as itself.
func unreserved(c byte) bool {
	switch {
	case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		return true
	case c == '-', c == '.', c == '_', c == '~':
		return true
	}
	return false
}
