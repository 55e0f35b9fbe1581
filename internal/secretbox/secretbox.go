// Package secretbox encrypts small secrets, such as TOTP secrets, for storage
// with AES-256-GCM under a ring of keys that can rotate.
//
// A sealed value is laid out as
//
//	version (1 byte) | key id (4 bytes) | nonce (12 bytes) | ciphertext and tag
//
// The key id is derived from the key by hashing, so a dump of the database
// tells which key sealed a value without revealing anything about the key.
// The version byte and key id are authenticated together with the caller's
// associated data, so none of them can be changed without Open noticing.
package secretbox

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the length in bytes of every key in a Keyring.
const KeySize = 32

const (
	version   byte = 1
	idSize         = 4
	nonceSize      = 12
	tagSize        = 16
	headerLen      = 1 + idSize
	overhead       = headerLen + nonceSize + tagSize

	// keyIDLabel separates key ids from any other hash of the same key.
	keyIDLabel = "authsvc secretbox key id v1\x00"
)

// Errors returned by ParseKey, NewKeyring and Open. Callers match them with
// errors.Is.
var (
	// ErrInvalidKey means a key is not 32 bytes in standard base64.
	ErrInvalidKey = errors.New("invalid key")

	// ErrUnknownKey means a sealed value names a key that is neither the
	// current nor one of the previous keys of the ring.
	ErrUnknownKey = errors.New("sealed with an unknown key")

	// ErrCorrupt means a sealed value is malformed, or it does not
	// authenticate under its key and the associated data given.
	ErrCorrupt = errors.New("sealed value is corrupt or belongs elsewhere")
)

// ParseKey decodes a key written in standard base64, with or without
// padding, ignoring white space around it. The error never contains the
// input, which is a secret.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	enc := base64.StdEncoding
	if len(s)%4 != 0 {
		enc = base64.RawStdEncoding
	}

	key, err := enc.DecodeString(s)
	if err != nil {
		// The decoder's error names only an offset, never the text.
		return nil, fmt.Errorf("%w: not standard base64: %w", ErrInvalidKey, err)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("%w: decodes to %d bytes, want %d",
			ErrInvalidKey, len(key), KeySize)
	}
	return key, nil
}

// key is one AES-256 key ready for use.
type key struct {
	id   [idSize]byte
	raw  []byte
	aead cipher.AEAD
}

// Keyring seals under its current key and opens values sealed under the
// current key or any of the previous keys. It is safe for concurrent use.
type Keyring struct {
	current  *key
	previous []*key
	byID     map[[idSize]byte]*key
}

// NewKeyring returns a keyring that seals with current and also opens what
// was sealed with any of previous. Every key must be KeySize bytes. A
// previous key equal to the current key or to an earlier previous key is
// ignored; two different keys with the same key id are refused.
func NewKeyring(current []byte, previous ...[]byte) (*Keyring, error) {
	cur, err := newKey(current)
	if err != nil {
		return nil, fmt.Errorf("current key: %w", err)
	}
	kr := &Keyring{current: cur, byID: map[[idSize]byte]*key{cur.id: cur}}

	for i, raw := range previous {
		k, err := newKey(raw)
		if err != nil {
			return nil, fmt.Errorf("previous key %d: %w", i+1, err)
		}
		if other, ok := kr.byID[k.id]; ok {
			if bytes.Equal(other.raw, k.raw) {
				continue
			}
			return nil, fmt.Errorf("previous key %d: %w: its key id collides with another key",
				i+1, ErrInvalidKey)
		}
		kr.byID[k.id] = k
		kr.previous = append(kr.previous, k)
	}
	return kr, nil
}

// newKey checks the length of raw and prepares its cipher.
func newKey(raw []byte) (*key, error) {
	if len(raw) != KeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidKey, len(raw), KeySize)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return &key{id: keyID(raw), raw: bytes.Clone(raw), aead: aead}, nil
}

// keyID names a key by the first bytes of a labelled hash of it.
func keyID(raw []byte) [idSize]byte {
	h := sha256.New()
	h.Write([]byte(keyIDLabel))
	h.Write(raw)
	var id [idSize]byte
	copy(id[:], h.Sum(nil))
	return id
}

// Seal encrypts plaintext under the current key with a fresh random nonce,
// binding it to associatedData (for TOTP secrets, the user id). The same
// associated data must be given to Open.
func (kr *Keyring) Seal(plaintext, associatedData []byte) ([]byte, error) {
	out := make([]byte, headerLen+nonceSize, overhead+len(plaintext))
	out[0] = version
	copy(out[1:headerLen], kr.current.id[:])

	nonce := out[headerLen : headerLen+nonceSize]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}

	ad := authData(out[:headerLen], associatedData)
	return kr.current.aead.Seal(out, nonce, plaintext, ad), nil
}

// Open decrypts a value made by Seal with any key of the ring. It reports
// whether the value was sealed under the current key; when it was not, the
// caller should seal the plaintext again and store the result.
//
// Open returns ErrUnknownKey when no key of the ring has the value's key id,
// and ErrCorrupt when the value is malformed, was changed, or was sealed
// with other associated data.
func (kr *Keyring) Open(sealed, associatedData []byte) (plaintext []byte, current bool, err error) {
	if len(sealed) < overhead {
		return nil, false, fmt.Errorf("open: %w: %d bytes is too short", ErrCorrupt, len(sealed))
	}
	if sealed[0] != version {
		return nil, false, fmt.Errorf("open: %w: unknown version %d", ErrCorrupt, sealed[0])
	}

	var id [idSize]byte
	copy(id[:], sealed[1:headerLen])
	k, ok := kr.byID[id]
	if !ok {
		return nil, false, fmt.Errorf("open: %w (key id %x)", ErrUnknownKey, id)
	}

	nonce := sealed[headerLen : headerLen+nonceSize]
	ad := authData(sealed[:headerLen], associatedData)
	plaintext, err = k.aead.Open(nil, nonce, sealed[headerLen+nonceSize:], ad)
	if err != nil {
		return nil, false, fmt.Errorf("open: %w: %w", ErrCorrupt, err)
	}
	return plaintext, k == kr.current, nil
}

// authData is what GCM authenticates besides the ciphertext: the header of
// the sealed value followed by the caller's associated data.
func authData(header, associatedData []byte) []byte {
	ad := make([]byte, 0, len(header)+len(associatedData))
	ad = append(ad, header...)
	return append(ad, associatedData...)
}

// Derive returns a 32-byte key for purpose, derived from the current key
// with HKDF-SHA256 (purpose as the info string). Different purposes give
// unrelated keys, so the encryption key itself is never used for anything
// but encryption.
func (kr *Keyring) Derive(purpose string) []byte {
	return derive(kr.current.raw, purpose)
}

// DerivePrevious returns the keys Derive would have given for purpose under
// each previous key, in the order the previous keys were given to
// NewKeyring (without the ones it ignored).
func (kr *Keyring) DerivePrevious(purpose string) [][]byte {
	out := make([][]byte, 0, len(kr.previous))
	for _, k := range kr.previous {
		out = append(out, derive(k.raw, purpose))
	}
	return out
}

// derive runs HKDF-SHA256 over secret with purpose as info and no salt.
func derive(secret []byte, purpose string) []byte {
	out, err := hkdf.Key(sha256.New, secret, nil, purpose, KeySize)
	if err != nil {
		// HKDF fails only for output longer than 255 hash lengths.
		panic("secretbox: hkdf: " + err.Error())
	}
	return out
}
