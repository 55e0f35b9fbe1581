// Package identity parses email addresses and gives each one the canonical
// form under which it owns an account.
//
// Two spellings name the same account when their canonical forms match. The
// canonical form of the local part is NFKC, then Unicode case folding, then
// NFKC again; the domain is in its IDNA ASCII form, lower-cased. So
// "Alice@Example.COM", "ａｌｉｃｅ@example.com" and "alice@example.com" are one
// account, and so are "x@bücher.example" and "x@xn--bcher-kva.example".
package identity

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// ErrInvalidEmail is wrapped by every error ParseEmail returns. The error
// text names the rule that failed and never quotes the input.
var ErrInvalidEmail = errors.New("invalid email address")

// MaxLength is the longest address accepted, in octets, both as typed (in
// NFC) and in canonical form.
const MaxLength = 254

// Email is a parsed address.
type Email struct {
	// Typed is the address as the user typed it, in NFC, with surrounding
	// ASCII spaces removed. It is what the user is shown.
	Typed string
	// Canonical is the form that identifies the account: two addresses
	// with equal Canonical forms are the same account.
	Canonical string
}

// String returns the typed form.
func (e Email) String() string {
	return e.Typed
}

// domainProfile converts domains to their ASCII form with the UTS 46
// mapping for lookup (which lower-cases and maps full-width characters),
// non-transitional processing (so "ß" stays "ß" rather than becoming "ss"),
// the Bidi rule, the hostname character rules and the DNS length limits.
// A Profile is immutable and safe for concurrent use.
var domainProfile = idna.New(
	idna.MapForLookup(),
	idna.Transitional(false),
	idna.BidiRule(),
	idna.VerifyDNSLength(true),
)

// ParseEmail parses an addr-spec as defined for accounts:
//
//   - leading and trailing ASCII spaces (U+0020) are removed; no other
//     trimming happens;
//   - it must be valid UTF-8 and at most MaxLength octets in NFC;
//   - no control, format (Unicode Cf, which includes the bidirectional
//     overrides and isolates, the directional marks and the zero-width
//     characters), whitespace or separator characters anywhere, and no ':';
//   - exactly one '@'; no display name, angle brackets, quoted local part or
//     comments;
//   - the local part, in canonical form, is a dot-atom: atoms of ASCII atext
//     or non-ASCII letters, marks and digits (RFC 6531), separated by single
//     dots, no atom starting with a combining mark;
//   - the domain converts to IDNA ASCII form and has at least two labels,
//     the last not all digits: single-label hosts such as "localhost", IP
//     literals and a trailing root dot are refused;
//   - the canonical form is also at most MaxLength octets.
//
// Every error wraps ErrInvalidEmail.
func ParseEmail(s string) (Email, error) {
	s = strings.Trim(s, " ")
	// NFC shrinks text by a factor of three at most (Hangul jamo), so a far
	// longer input is refused before any normalisation work.
	if len(s) > 4*MaxLength {
		return Email{}, invalid("longer than 254 octets")
	}
	if !utf8.ValidString(s) {
		return Email{}, invalid("not valid UTF-8")
	}
	typed := norm.NFC.String(s)
	if len(typed) > MaxLength {
		return Email{}, invalid("longer than 254 octets")
	}
	if err := checkRunes(typed); err != nil {
		return Email{}, err
	}

	local, domain, ok := strings.Cut(typed, "@")
	if !ok || strings.Contains(domain, "@") {
		return Email{}, invalid("want exactly one @")
	}
	if local == "" {
		return Email{}, invalid("empty local part")
	}
	if domain == "" {
		return Email{}, invalid("empty domain")
	}

	canonLocal, err := canonicalLocal(local)
	if err != nil {
		return Email{}, err
	}
	canonDomain, err := canonicalDomain(domain)
	if err != nil {
		return Email{}, err
	}

	canonical := canonLocal + "@" + canonDomain
	if len(canonical) > MaxLength {
		return Email{}, invalid("canonical form longer than 254 octets")
	}
	return Email{Typed: typed, Canonical: canonical}, nil
}

// invalid returns an error wrapping ErrInvalidEmail with a fixed reason.
func invalid(reason string) error {
	return fmt.Errorf("%w: %s", ErrInvalidEmail, reason)
}

// checkRunes refuses characters that have no place anywhere in an address.
func checkRunes(s string) error {
	for _, r := range s {
		switch {
		case unicode.IsControl(r):
			return invalid("control character")
		case unicode.Is(unicode.Cf, r):
			return invalid("invisible formatting character")
		case unicode.IsSpace(r) || unicode.In(r, unicode.Z):
			return invalid("whitespace")
		case r == ':':
			return invalid("colon")
		}
	}
	return nil
}

// maxFoldRounds bounds the rounds canonicalLocal spends reaching a fixed
// point; one round is enough for every input seen so far.
const maxFoldRounds = 3

// canonicalLocal returns the canonical form of a local part and checks that
// it is a dot-atom.
func canonicalLocal(local string) (string, error) {
	c := foldLocal(local)
	for i := 0; ; i++ {
		next := foldLocal(c)
		if next == c {
			break
		}
		if i == maxFoldRounds {
			return "", invalid("local part has no stable canonical form")
		}
		c = next
	}

	for atom := range strings.SplitSeq(c, ".") {
		if atom == "" {
			return "", invalid("empty atom in local part")
		}
		first, _ := utf8.DecodeRuneInString(atom)
		if unicode.Is(unicode.M, first) {
			return "", invalid("local part atom starts with a combining mark")
		}
		for _, r := range atom {
			if !isAtext(r) {
				return "", invalid("character not allowed in local part")
			}
		}
	}
	return c, nil
}

// foldLocal is one round of the local part's canonical mapping: NFKC, case
// folding, NFKC. A Caser holds state, so each call makes its own.
func foldLocal(s string) string {
	return norm.NFKC.String(cases.Fold().String(norm.NFKC.String(s)))
}

// isAtext reports whether r may appear in a dot-atom: the ASCII atext of
// RFC 5322, or a non-ASCII letter, mark or digit.
func isAtext(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' ||
			strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)
	}
	return unicode.In(r, unicode.L, unicode.M, unicode.N)
}

// canonicalDomain returns the lower-case IDNA ASCII form of domain and
// checks the label rules ParseEmail documents.
func canonicalDomain(domain string) (string, error) {
	ascii, err := domainProfile.ToASCII(domain)
	if err != nil {
		// The idna error quotes the label, so only its fact is kept.
		return "", invalid("domain is not a valid internationalised name")
	}
	ascii = strings.ToLower(ascii)

	labels := strings.Split(ascii, ".")
	if len(labels) < 2 {
		return "", invalid("domain needs at least two labels")
	}
	for _, l := range labels {
		if l == "" {
			return "", invalid("empty label in domain")
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return "", invalid("top-level label is all digits")
	}
	return ascii, nil
}

// HeaderValue returns the address in the ASCII form sent in the
// X-Auth-User-Email header: the typed local part with every byte outside
// printable ASCII, and '%' itself, percent-encoded as %XX (UTF-8, upper-case
// hex), then '@' and the domain in IDNA ASCII form.
func HeaderValue(e Email) string {
	at := strings.LastIndexByte(e.Typed, '@')
	cat := strings.LastIndexByte(e.Canonical, '@')
	if at < 0 || cat < 0 {
		return percentEncode(e.Typed)
	}
	return percentEncode(e.Typed[:at]) + "@" + e.Canonical[cat+1:]
}

// percentEncode keeps printable ASCII other than '%' and encodes every other
// byte as %XX.
func percentEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > ' ' && c < 0x7f && c != '%' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0x0f])
	}
	return b.String()
}
