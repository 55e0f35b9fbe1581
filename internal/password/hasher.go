package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/text/unicode/norm"
)

// ErrBusy is returned when no hashing slot became free in time, either
// because the wait limit passed or because the caller's context ended first.
// In the second case the error also wraps the context's error.
var ErrBusy = errors.New("password hashing busy")

// DefaultMaxWait is how long a caller waits for a hashing slot when
// NewHasher is given no wait limit.
const DefaultMaxWait = 2 * time.Second

// Hasher hashes and verifies passwords with Argon2id while keeping at most
// a fixed number of hashes in flight. A Hasher is safe for concurrent use.
type Hasher struct {
	params  Params
	maxWait time.Duration
	slots   chan struct{}

	inFlight atomic.Int64
	waiting  atomic.Int64
	waited   atomic.Int64 // nanoseconds callers have spent waiting for slots

	// derive computes the raw hash; after returns the channel that fires
	// when a wait for a slot times out. Tests replace both.
	derive func(password, salt []byte, p Params) []byte
	after  func(d time.Duration) <-chan time.Time
}

// NewHasher returns a Hasher that makes new hashes with params (zero fields
// take the values of DefaultParams), runs at most concurrency hashes at once
// (runtime.NumCPU() when not positive) and lets a caller wait at most
// maxWait for a slot (DefaultMaxWait when not positive). NewHasher panics
// when params fail Validate; check parameters read from configuration with
// Validate first.
func NewHasher(params Params, concurrency int, maxWait time.Duration) *Hasher {
	if err := params.Validate(); err != nil {
		panic(err)
	}
	if concurrency <= 0 {
		concurrency = runtime.NumCPU()
	}
	if maxWait <= 0 {
		maxWait = DefaultMaxWait
	}
	return &Hasher{
		params:  params.withDefaults(),
		maxWait: maxWait,
		slots:   make(chan struct{}, concurrency),
		derive:  deriveArgon2id,
		after:   time.After,
	}
}

// deriveArgon2id computes the raw Argon2id hash of password under p.
func deriveArgon2id(password, salt []byte, p Params) []byte {
	return argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, p.KeyLen)
}

// Params returns the parameters new hashes are made with.
func (h *Hasher) Params() Params {
	return h.params
}

// InFlight returns the number of hashes running now.
func (h *Hasher) InFlight() int {
	return int(h.inFlight.Load())
}

// Waited returns the total time callers have spent waiting for slots.
func (h *Hasher) Waited() time.Duration {
	return time.Duration(h.waited.Load())
}

// Waiting returns the number of callers waiting for a hashing slot now.
func (h *Hasher) Waiting() int {
	return int(h.waiting.Load())
}

// Hash returns the PHC string of a new Argon2id hash of password with a
// fresh random salt. The password is NFC-normalised first, as Normalize
// does; the policy itself is the caller's business (Normalize and Check).
// Hash returns an error wrapping ErrBusy when no slot became free in time.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, h.params.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password: reading salt: %w", err)
	}

	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()

	hash := h.derive([]byte(norm.NFC.String(password)), salt, h.params)
	return encodePHC(h.params, salt, hash), nil
}

// Verify reports whether password matches the stored PHC string phc, in
// constant time over the hash bytes. The password is NFC-normalised first,
// like in Hash. When the password matches, rehash reports whether the
// stored hash was made with other parameters than the Hasher's, so the
// caller should store a new Hash of the password; rehash is always false
// when ok is false. A phc that cannot be parsed gives an error wrapping
// ErrMalformedHash; a full Hasher gives one wrapping ErrBusy.
func (h *Hasher) Verify(ctx context.Context, password, phc string) (ok, rehash bool, err error) {
	stored, err := parsePHC(phc)
	if err != nil {
		return false, false, fmt.Errorf("password: verify: %w", err)
	}

	if err := h.acquire(ctx); err != nil {
		return false, false, err
	}
	defer h.release()

	got := h.derive([]byte(norm.NFC.String(password)), stored.salt, stored.params)
	if subtle.ConstantTimeCompare(got, stored.hash) != 1 {
		return false, false, nil
	}
	return true, stored.params != h.params, nil
}

// VerifyDummy does the work of one Verify with the Hasher's parameters
// against a hash that no password matches, so that a login for an unknown
// email takes as long as one for a known email. It waits for a slot like
// Verify and returns an error wrapping ErrBusy when none became free, so the
// caller can give the same busy answer it gives for known emails; otherwise
// it returns nil.
func (h *Hasher) VerifyDummy(ctx context.Context, password string) error {
	if err := h.acquire(ctx); err != nil {
		return err
	}
	defer h.release()

	// An all-zero salt and hash stand in for a stored hash. No password is
	// known to produce an all-zero hash; only the work matters here.
	p := h.params
	got := h.derive([]byte(norm.NFC.String(password)), make([]byte, p.SaltLen), p)
	subtle.ConstantTimeCompare(got, make([]byte, p.KeyLen))
	return nil
}

// acquire takes a hashing slot, waiting at most h.maxWait or until ctx ends.
func (h *Hasher) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("password: %w: %w", ErrBusy, err)
	}

	select {
	case h.slots <- struct{}{}:
		h.inFlight.Add(1)
		return nil
	default:
	}

	h.waiting.Add(1)
	defer h.waiting.Add(-1)
	start := time.Now()
	defer func() { h.waited.Add(int64(time.Since(start))) }()

	timeout := h.after(h.maxWait)
	select {
	case h.slots <- struct{}{}:
		h.inFlight.Add(1)
		return nil
	case <-timeout:
		return fmt.Errorf("password: %w: no slot within %v", ErrBusy, h.maxWait)
	case <-ctx.Done():
		return fmt.Errorf("password: %w: %w", ErrBusy, ctx.Err())
	}
}

// release gives back a slot taken by acquire.
func (h *Hasher) release() {
	h.inFlight.Add(-1)
	<-h.slots
}
