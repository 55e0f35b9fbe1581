package password

import (
	"context"
	"errors"
	"testing"
	"time"
)

// gate stands in for the hashing work and the wait timer of a Hasher, so a
// test decides when a hash ends and when a wait times out.
type gate struct {
	entered chan struct{}  // receives once per hash that starts
	finish  chan struct{}  // one value lets one running hash end
	waiter  chan struct{}  // receives once per caller that starts waiting
	timeout chan time.Time // closing it times out every wait
}

// newGatedHasher returns a Hasher with tinyParams and the given bound whose
// hashing and wait timer are controlled by the returned gate.
func newGatedHasher(t *testing.T, concurrency int) (*Hasher, *gate) {
	t.Helper()
	g := &gate{
		entered: make(chan struct{}),
		finish:  make(chan struct{}),
		waiter:  make(chan struct{}),
		timeout: make(chan time.Time),
	}
	h := NewHasher(tinyParams, concurrency, time.Hour)
	h.derive = func(pw, salt []byte, p Params) []byte {
		g.entered <- struct{}{}
		<-g.finish
		return deriveArgon2id(pw, salt, p)
	}
	h.after = func(time.Duration) <-chan time.Time {
		g.waiter <- struct{}{}
		return g.timeout
	}
	return h, g
}

// hashAsync runs h.Hash in a goroutine and returns the channel its error
// arrives on.
func hashAsync(h *Hasher, ctx context.Context) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := h.Hash(ctx, "some password")
		done <- err
	}()
	return done
}

// TestHasherBound fills every slot, shows a further caller waiting and then
// busy when its wait times out, and lets the others finish.
func TestHasherBound(t *testing.T) {
	const n = 3
	h, g := newGatedHasher(t, n)
	ctx := context.Background()

	var running []<-chan error
	for range n {
		running = append(running, hashAsync(h, ctx))
		<-g.entered
	}
	if got := h.InFlight(); got != n {
		t.Fatalf("InFlight() = %d, want %d", got, n)
	}

	extra := hashAsync(h, ctx)
	<-g.waiter
	if got := h.Waiting(); got != 1 {
		t.Fatalf("Waiting() = %d, want 1", got)
	}
	close(g.timeout)
	if err := <-extra; !errors.Is(err, ErrBusy) {
		t.Fatalf("extra caller got %v, want ErrBusy", err)
	}
	if got := h.Waiting(); got != 0 {
		t.Fatalf("Waiting() after timeout = %d, want 0", got)
	}
	if h.Waited() <= 0 {
		t.Fatalf("Waited() = %v after a caller waited", h.Waited())
	}

	for _, done := range running {
		g.finish <- struct{}{}
		if err := <-done; err != nil {
			t.Fatalf("bounded caller failed: %v", err)
		}
	}
	if got := h.InFlight(); got != 0 {
		t.Fatalf("InFlight() at the end = %d, want 0", got)
	}
}

// TestHasherWaiterGetsFreedSlot shows a waiting caller taking the slot that
// a finished hash gives back, before its wait times out.
func TestHasherWaiterGetsFreedSlot(t *testing.T) {
	h, g := newGatedHasher(t, 1)
	ctx := context.Background()

	first := hashAsync(h, ctx)
	<-g.entered
	second := hashAsync(h, ctx)
	<-g.waiter

	g.finish <- struct{}{}
	if err := <-first; err != nil {
		t.Fatalf("first caller: %v", err)
	}
	<-g.entered // the waiting caller now runs
	g.finish <- struct{}{}
	if err := <-second; err != nil {
		t.Fatalf("waiting caller: %v", err)
	}
}

// TestHasherContextEndsWait cancels a waiting caller's context.
func TestHasherContextEndsWait(t *testing.T) {
	h, g := newGatedHasher(t, 1)

	first := hashAsync(h, context.Background())
	<-g.entered

	ctx, cancel := context.WithCancel(context.Background())
	waiting := hashAsync(h, ctx)
	<-g.waiter
	cancel()
	err := <-waiting
	if !errors.Is(err, ErrBusy) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want ErrBusy wrapping context.Canceled", err)
	}

	g.finish <- struct{}{}
	if err := <-first; err != nil {
		t.Fatalf("first caller: %v", err)
	}
}

// TestHasherEndedContextDoesNoWork calls every method with a cancelled
// context on an idle Hasher.
func TestHasherEndedContextDoesNoWork(t *testing.T) {
	h, _ := newGatedHasher(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	// The gate's channels are unbuffered and nobody reads them: any hashing
	// or waiting would block this test.
	if _, err := h.Hash(ctx, "some password"); !errors.Is(err, ErrBusy) {
		t.Fatalf("Hash = %v, want ErrBusy", err)
	}
	phc := referenceVectors[1].phc
	if _, _, err := h.Verify(ctx, "some password", phc); !errors.Is(err, ErrBusy) {
		t.Fatalf("Verify = %v, want ErrBusy", err)
	}
	if err := h.VerifyDummy(ctx, "some password"); !errors.Is(err, ErrBusy) {
		t.Fatalf("VerifyDummy = %v, want ErrBusy", err)
	}
}

// TestHasherRealTimer runs the bound with the real timer: a caller that
// finds the only slot taken gets ErrBusy once maxWait has passed.
func TestHasherRealTimer(t *testing.T) {
	h := NewHasher(tinyParams, 1, time.Millisecond)
	entered, finish := make(chan struct{}), make(chan struct{})
	h.derive = func(pw, salt []byte, p Params) []byte {
		entered <- struct{}{}
		<-finish
		return deriveArgon2id(pw, salt, p)
	}

	first := hashAsync(h, context.Background())
	<-entered
	if err := h.VerifyDummy(context.Background(), "x"); !errors.Is(err, ErrBusy) {
		t.Fatalf("VerifyDummy on a full Hasher = %v, want ErrBusy", err)
	}
	close(finish)
	if err := <-first; err != nil {
		t.Fatalf("first caller: %v", err)
	}
}

// TestVerifyDummyDoesTheWork checks that VerifyDummy derives one hash with
// the current parameters and gives its slot back.
func TestVerifyDummyDoesTheWork(t *testing.T) {
	h := NewHasher(tinyParams, 1, 0)
	var got []Params
	h.derive = func(pw, salt []byte, p Params) []byte {
		got = append(got, p)
		if uint32(len(salt)) != p.SaltLen {
			t.Errorf("salt length %d, want %d", len(salt), p.SaltLen)
		}
		return deriveArgon2id(pw, salt, p)
	}

	if err := h.VerifyDummy(context.Background(), "any password"); err != nil {
		t.Fatalf("VerifyDummy: %v", err)
	}
	if len(got) != 1 || got[0] != tinyParams {
		t.Fatalf("VerifyDummy derived with %+v, want one call with %+v", got, tinyParams)
	}
	if h.InFlight() != 0 {
		t.Fatalf("InFlight() = %d after VerifyDummy, want 0", h.InFlight())
	}
}
