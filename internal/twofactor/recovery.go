package twofactor

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"
)

// RecoveryCodeCount is how many recovery codes a user is given at a time.
const RecoveryCodeCount = 10

// recoveryAlphabet has 32 symbols, so each carries 5 bits: the digits and
// the lower-case letters without i, l, o and u, which are easy to misread
// (as 1, 1, 0 and v) or to spell words with. Codes have 16 symbols: 80 bits.
const recoveryAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

const (
	recoverySymbols = 16
	recoveryGroup   = 4
	recoveryBytes   = recoverySymbols * 5 / 8
)

// recoveryEncoding writes 10 bytes as 16 symbols, with no padding needed.
var recoveryEncoding = base32.NewEncoding(recoveryAlphabet).WithPadding(base32.NoPadding)

// recoveryIndex maps a byte to its symbol's position in recoveryAlphabet,
// accepting upper-case letters too, or to -1 for bytes that are no symbol.
var recoveryIndex = func() [256]int8 {
	var idx [256]int8
	for i := range idx {
		idx[i] = -1
	}
	for i := 0; i < len(recoveryAlphabet); i++ {
		c := recoveryAlphabet[i]
		idx[c] = int8(i)
		if 'a' <= c && c <= 'z' {
			idx[c-'a'+'A'] = int8(i)
		}
	}
	return idx
}()

// NewRecoveryCodes returns n distinct random recovery codes, each of 16
// lower-case symbols (80 bits) shown in groups as xxxx-xxxx-xxxx-xxxx.
// Only the HashRecoveryCode of each should be stored.
func NewRecoveryCodes(n int) ([]string, error) {
	return recoveryCodes(n, newRecoveryCode)
}

// recoveryCodes collects n distinct codes from next.
func recoveryCodes(n int, next func() (string, error)) ([]string, error) {
	if n < 1 {
		return nil, fmt.Errorf("new recovery codes: count %d, want at least 1", n)
	}

	codes := make([]string, 0, n)
	seen := make(map[string]bool, n)
	for len(codes) < n {
		code, err := next()
		if err != nil {
			return nil, err
		}
		// A repeat is astronomically unlikely, but two equal codes would
		// collide as hashes in the store, so draw again.
		if seen[code] {
			continue
		}
		seen[code] = true
		codes = append(codes, code)
	}
	return codes, nil
}

// newRecoveryCode draws 80 random bits and writes them as 16 symbols of 5
// bits each (base32 in the recovery alphabet), grouped by hyphens.
func newRecoveryCode() (string, error) {
	var raw [recoveryBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("new recovery code: %w", err)
	}
	return formatRecoveryCode(recoveryEncoding.EncodeToString(raw[:])), nil
}

// formatRecoveryCode puts a hyphen between each group of symbols.
func formatRecoveryCode(normalized string) string {
	var b strings.Builder
	b.Grow(len(normalized) + len(normalized)/recoveryGroup)
	for i := 0; i < len(normalized); i++ {
		if i > 0 && i%recoveryGroup == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(normalized[i])
	}
	return b.String()
}

// NormalizeRecoveryCode removes ASCII spaces and hyphens from s, lowers its
// ASCII letters, and reports whether what is left is exactly 16 symbols of
// the recovery code alphabet, which it then returns. Letters that only
// resemble a symbol (another script, full-width forms, the Kelvin sign) and
// letters outside the alphabet make the code invalid.
func NormalizeRecoveryCode(s string) (string, bool) {
	var out [recoverySymbols]byte
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' || c == '-' {
			continue
		}
		idx := recoveryIndex[c]
		if idx < 0 || n == len(out) {
			return "", false
		}
		out[n] = recoveryAlphabet[idx]
		n++
	}
	if n != len(out) {
		return "", false
	}
	return string(out[:]), true
}

// HashRecoveryCode returns the HMAC-SHA-256 under key of a code that has
// passed NormalizeRecoveryCode: the value the store keeps and looks up.
// The key should come from the server's secret (see secretbox's Derive), so
// that a database dump alone does not allow guessing codes offline.
func HashRecoveryCode(key []byte, normalized string) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(normalized))
	return mac.Sum(nil)
}
