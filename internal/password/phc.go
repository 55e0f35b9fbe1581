// Package password hashes and checks user passwords.
//
// Hashes are Argon2id in the PHC string format, for example
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//
// with salt and hash in unpadded standard base64. The parameters travel
// inside each hash, so they can be raised later: Verify reports when a
// stored hash was made with other parameters than the current ones, and the
// caller re-hashes the password it has just proven.
//
// A Hasher bounds how many hashes run at once, because each one holds its
// full memory cost for its whole duration. Normalize and Check apply the
// password policy: valid UTF-8, NFC, 8 to 256 code points, not a common
// password and not the email address itself.
package password

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrMalformedHash is returned for a stored hash that is not an Argon2id PHC
// string this package can verify.
var ErrMalformedHash = errors.New("malformed password hash")

// Params are the Argon2id cost parameters and the salt and hash lengths.
type Params struct {
	// Memory is the memory cost in KiB.
	Memory uint32
	// Time is the number of passes over the memory.
	Time uint32
	// Threads is the number of lanes.
	Threads uint8
	// SaltLen is the length of a new random salt in bytes.
	SaltLen uint32
	// KeyLen is the length of the derived hash in bytes.
	KeyLen uint32
}

// Limits on parameters, both for new hashes and for stored ones. They keep
// a corrupt or hostile stored hash from asking for an absurd amount of work.
const (
	minMemory  = 8
	maxMemory  = 1 << 20 // KiB, 1 GiB
	maxTime    = 64
	minSaltLen = 8
	maxSaltLen = 64
	minKeyLen  = 16
	maxKeyLen  = 128
)

// argonVersion is the only Argon2 version written and accepted (0x13).
const argonVersion = 19

// DefaultParams returns the parameters used when none are given: the OWASP
// minimum for Argon2id (19 MiB, 2 passes, 1 lane), a 16-byte salt and a
// 32-byte hash.
func DefaultParams() Params {
	return Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}
}

// withDefaults returns p with every zero field replaced by its default.
func (p Params) withDefaults() Params {
	d := DefaultParams()
	if p.Memory == 0 {
		p.Memory = d.Memory
	}
	if p.Time == 0 {
		p.Time = d.Time
	}
	if p.Threads == 0 {
		p.Threads = d.Threads
	}
	if p.SaltLen == 0 {
		p.SaltLen = d.SaltLen
	}
	if p.KeyLen == 0 {
		p.KeyLen = d.KeyLen
	}
	return p
}

// Validate reports an error when p, after zero fields take their defaults,
// lies outside the limits this package hashes and verifies with.
func (p Params) Validate() error {
	return p.withDefaults().validate()
}

// validate is Validate without defaults, for parameters read from a hash.
func (p Params) validate() error {
	switch {
	case p.Memory < minMemory*uint32(p.Threads) || p.Memory > maxMemory:
		return fmt.Errorf("password: memory %d KiB outside %d..%d for %d lanes",
			p.Memory, minMemory*uint32(p.Threads), maxMemory, p.Threads)
	case p.Time < 1 || p.Time > maxTime:
		return fmt.Errorf("password: %d passes outside 1..%d", p.Time, maxTime)
	case p.Threads < 1:
		return fmt.Errorf("password: no lanes")
	case p.SaltLen < minSaltLen || p.SaltLen > maxSaltLen:
		return fmt.Errorf("password: salt length %d outside %d..%d",
			p.SaltLen, minSaltLen, maxSaltLen)
	case p.KeyLen < minKeyLen || p.KeyLen > maxKeyLen:
		return fmt.Errorf("password: hash length %d outside %d..%d",
			p.KeyLen, minKeyLen, maxKeyLen)
	}
	return nil
}

// phc is a decoded Argon2id PHC string.
type phc struct {
	params Params
	salt   []byte
	hash   []byte
}

// b64 is the PHC base64 flavour: standard alphabet, no padding. Strict
// decoding refuses non-zero trailing bits, so each hash has one spelling.
var b64 = base64.RawStdEncoding.Strict()

// encodePHC formats a hash and its parameters as a PHC string.
func encodePHC(p Params, salt, hash []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argonVersion, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(hash))
}

// parsePHC decodes an Argon2id PHC string. Every failure wraps
// ErrMalformedHash and never quotes the input.
func parsePHC(s string) (phc, error) {
	var out phc

	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return out, fmt.Errorf("%w: want 5 fields", ErrMalformedHash)
	}
	if parts[1] != "argon2id" {
		return out, fmt.Errorf("%w: not argon2id", ErrMalformedHash)
	}
	if parts[2] != "v="+strconv.Itoa(argonVersion) {
		return out, fmt.Errorf("%w: unsupported version", ErrMalformedHash)
	}

	if err := parseCosts(parts[3], &out.params); err != nil {
		return out, err
	}

	salt, err := decodeB64(parts[4])
	if err != nil {
		return out, fmt.Errorf("%w: salt: %w", ErrMalformedHash, err)
	}
	hash, err := decodeB64(parts[5])
	if err != nil {
		return out, fmt.Errorf("%w: hash: %w", ErrMalformedHash, err)
	}
	out.salt, out.hash = salt, hash
	out.params.SaltLen = uint32(len(salt))
	out.params.KeyLen = uint32(len(hash))

	if err := out.params.validate(); err != nil {
		return out, fmt.Errorf("%w: %w", ErrMalformedHash, err)
	}
	return out, nil
}

// decodeB64 decodes unpadded standard base64. Unlike the encoding package
// alone, it refuses the line breaks that package skips, so an accepted value
// has exactly one spelling.
func decodeB64(s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '+' || c == '/'
		if !ok {
			return nil, fmt.Errorf("byte %d is not base64", i)
		}
	}
	return b64.DecodeString(s)
}

// parseCosts reads "m=<kib>,t=<passes>,p=<lanes>" in that order, the only
// order the PHC format allows, into p. A zero cost is refused rather than
// defaulted.
func parseCosts(s string, p *Params) error {
	fields := strings.Split(s, ",")
	if len(fields) != 3 {
		return fmt.Errorf("%w: want m, t and p", ErrMalformedHash)
	}

	var vals [3]uint64
	for i, key := range []string{"m=", "t=", "p="} {
		digits, ok := strings.CutPrefix(fields[i], key)
		if !ok || !isDecimal(digits) {
			return fmt.Errorf("%w: bad parameter %d", ErrMalformedHash, i+1)
		}
		v, err := strconv.ParseUint(digits, 10, 32)
		if err != nil || v == 0 {
			return fmt.Errorf("%w: parameter %d out of range", ErrMalformedHash, i+1)
		}
		vals[i] = v
	}
	if vals[2] > 255 {
		return fmt.Errorf("%w: too many lanes", ErrMalformedHash)
	}

	p.Memory, p.Time, p.Threads = uint32(vals[0]), uint32(vals[1]), uint8(vals[2])
	return nil
}

// isDecimal reports whether s is a decimal number in PHC form: digits only,
// no sign and no leading zero.
func isDecimal(s string) bool {
	if s == "" || len(s) > 10 || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
