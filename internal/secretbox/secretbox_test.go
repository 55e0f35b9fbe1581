package secretbox

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// newTestKey returns a fresh random key.
func newTestKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatalf("rand: %v", err)
	}
	return k
}

// newTestRing builds a keyring or fails the test.
func newTestRing(t testing.TB, current []byte, previous ...[]byte) *Keyring {
	t.Helper()
	kr, err := NewKeyring(current, previous...)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return kr
}

// TestParseKey accepts padded and unpadded standard base64 and refuses
// every other encoding and length without echoing the input.
func TestParseKey(t *testing.T) {
	raw := bytes.Repeat([]byte{0xfb, 0xef, 0x01, 0x7e}, 8)
	padded := base64.StdEncoding.EncodeToString(raw)
	unpadded := base64.RawStdEncoding.EncodeToString(raw)
	if !strings.HasSuffix(padded, "=") || len(unpadded) != 43 {
		t.Fatalf("test key encodings are not what the cases expect: %q %q", padded, unpadded)
	}

	tests := []struct {
		name  string
		in    string
		valid bool
	}{
		{"padded", padded, true},
		{"unpadded", unpadded, true},
		{"trailing newline", padded + "\n", true},
		{"surrounding spaces", "  " + unpadded + " ", true},
		{"url alphabet", base64.URLEncoding.EncodeToString(raw), false},
		{"empty", "", false},
		{"too short", base64.StdEncoding.EncodeToString(raw[:31]), false},
		{"too long", base64.StdEncoding.EncodeToString(append(raw, 0)), false},
		{"16 bytes", base64.StdEncoding.EncodeToString(raw[:16]), false},
		{"hex", hex.EncodeToString(raw), false},
		{"garbage", "not a key at all, clearly!!!!", false},
		{"inner space", padded[:20] + " " + padded[20:], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKey(tt.in)
			if !tt.valid {
				if err == nil {
					t.Fatalf("ParseKey accepted %q", tt.in)
				}
				if !errors.Is(err, ErrInvalidKey) {
					t.Errorf("error %v is not ErrInvalidKey", err)
				}
				if s := strings.TrimSpace(tt.in); s != "" && strings.Contains(err.Error(), s) {
					t.Errorf("error %q echoes the key", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			if !bytes.Equal(got, raw) {
				t.Errorf("ParseKey = %x, want %x", got, raw)
			}
		})
	}
}

// TestNewKeyring checks key lengths and that repeated keys are dropped.
func TestNewKeyring(t *testing.T) {
	a, b := newTestKey(t), newTestKey(t)
	tests := []struct {
		name     string
		current  []byte
		previous [][]byte
		wantErr  bool
		wantPrev int
	}{
		{"current only", a, nil, false, 0},
		{"with previous", a, [][]byte{b}, false, 1},
		{"previous repeats current", a, [][]byte{a, b}, false, 1},
		{"previous repeated", a, [][]byte{b, b}, false, 1},
		{"short current", a[:16], nil, true, 0},
		{"nil current", nil, nil, true, 0},
		{"long previous", a, [][]byte{append(bytes.Clone(b), 1)}, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kr, err := NewKeyring(tt.current, tt.previous...)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidKey) {
					t.Fatalf("NewKeyring error = %v, want ErrInvalidKey", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewKeyring: %v", err)
			}
			if got := len(kr.DerivePrevious("x")); got != tt.wantPrev {
				t.Errorf("%d previous keys kept, want %d", got, tt.wantPrev)
			}
		})
	}
}

// TestNewKeyringCopiesKeys checks that the ring keeps its own copy of
// each key, so callers may wipe theirs.
func TestNewKeyringCopiesKeys(t *testing.T) {
	k := newTestKey(t)
	kr := newTestRing(t, k)
	sealed, err := kr.Seal([]byte("secret"), []byte("u1"))
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	want := kr.Derive("p")

	// Scribbling over the caller's slice must not change the ring.
	clear(k)
	if _, _, err := kr.Open(sealed, []byte("u1")); err != nil {
		t.Fatalf("Open after the caller changed its key slice: %v", err)
	}
	if got := kr.Derive("p"); !bytes.Equal(got, want) {
		t.Errorf("Derive changed after the caller changed its key slice")
	}
}

// TestSealOpenRoundTrip checks sizes, that the plaintext does not show,
// and that Open gives it back under the current key.
func TestSealOpenRoundTrip(t *testing.T) {
	kr := newTestRing(t, newTestKey(t))
	tests := []struct {
		name      string
		plaintext []byte
		ad        []byte
	}{
		{"totp secret", bytes.Repeat([]byte{0x42}, 20), []byte("0190c1a2-7e4b-7c3d-9a11")},
		{"empty plaintext", nil, []byte("user")},
		{"empty associated data", []byte("hello"), nil},
		{"large", bytes.Repeat([]byte("abc"), 10000), []byte("u")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sealed, err := kr.Seal(tt.plaintext, tt.ad)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if want := overhead + len(tt.plaintext); len(sealed) != want {
				t.Errorf("sealed length %d, want %d", len(sealed), want)
			}
			if len(tt.plaintext) >= 8 && bytes.Contains(sealed, tt.plaintext) {
				t.Errorf("sealed value contains the plaintext")
			}

			got, current, err := kr.Open(sealed, tt.ad)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !current {
				t.Errorf("Open reported a previous key for a value sealed just now")
			}
			if !bytes.Equal(got, tt.plaintext) {
				t.Errorf("Open = %x, want %x", got, tt.plaintext)
			}
		})
	}
}

// TestSealUsesFreshNonces seals one plaintext repeatedly: GCM loses both
// secrecy and integrity if a nonce ever repeats under one key.
func TestSealUsesFreshNonces(t *testing.T) {
	kr := newTestRing(t, newTestKey(t))
	seen := make(map[string]bool)
	for range 100 {
		sealed, err := kr.Seal([]byte("same secret"), []byte("same user"))
		if err != nil {
			t.Fatalf("Seal: %v", err)
		}
		nonce := string(sealed[headerLen : headerLen+nonceSize])
		if seen[nonce] {
			t.Fatalf("nonce %x used twice", nonce)
		}
		seen[nonce] = true
	}
}

// TestOpenWrongAssociatedData models a sealed secret copied to another
// user's row: it must not open there.
func TestOpenWrongAssociatedData(t *testing.T) {
	kr := newTestRing(t, newTestKey(t))
	sealed, err := kr.Seal([]byte("secret"), []byte("user-1"))
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}

	for _, ad := range []string{"user-2", "user-", "user-11", "", "USER-1"} {
		if _, _, err := kr.Open(sealed, []byte(ad)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Open with associated data %q: err = %v, want ErrCorrupt", ad, err)
		}
	}
}

// TestOpenTampered flips every bit of a sealed value in turn and cuts or
// extends it.
func TestOpenTampered(t *testing.T) {
	kr := newTestRing(t, newTestKey(t))
	ad := []byte("user-1")
	sealed, err := kr.Seal([]byte("twenty bytes secret!"), ad)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}

	// Flipping any single bit outside the key id must fail authentication
	// or be refused as malformed; flipping a key id bit names another key.
	for i := range sealed {
		for bit := range 8 {
			bad := bytes.Clone(sealed)
			bad[i] ^= 1 << bit
			_, _, err := kr.Open(bad, ad)
			want := ErrCorrupt
			if i >= 1 && i < headerLen {
				want = ErrUnknownKey
			}
			if !errors.Is(err, want) {
				t.Fatalf("byte %d bit %d flipped: err = %v, want %v", i, bit, err, want)
			}
		}
	}

	tests := []struct {
		name   string
		sealed []byte
	}{
		{"nil", nil},
		{"header only", sealed[:headerLen]},
		{"truncated by one", sealed[:len(sealed)-1]},
		{"shortest possible minus one", sealed[:overhead-1]},
		{"extended", append(bytes.Clone(sealed), 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := kr.Open(tt.sealed, ad); !errors.Is(err, ErrCorrupt) {
				t.Errorf("err = %v, want ErrCorrupt", err)
			}
		})
	}
}

// TestOpenPreviousKey walks through a key rotation: old values open and
// are flagged, re-sealing moves them to the new key.
func TestOpenPreviousKey(t *testing.T) {
	oldKey, newKey := newTestKey(t), newTestKey(t)
	ad := []byte("user-1")
	plaintext := []byte("sealed before the rotation")

	oldRing := newTestRing(t, oldKey)
	sealed, err := oldRing.Seal(plaintext, ad)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}

	rotated := newTestRing(t, newKey, newTestKey(t), oldKey)
	got, current, err := rotated.Open(sealed, ad)
	if err != nil {
		t.Fatalf("Open under the rotated ring: %v", err)
	}
	if current {
		t.Errorf("Open reported the current key for a value sealed under a previous one")
	}
	if !bytes.Equal(got, plaintext) {
		t.Errorf("Open = %q, want %q", got, plaintext)
	}

	// Sealing again moves the value to the current key.
	resealed, err := rotated.Seal(got, ad)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if _, current, err := rotated.Open(resealed, ad); err != nil || !current {
		t.Errorf("Open of the re-sealed value: current = %v, err = %v", current, err)
	}
	if _, _, err := oldRing.Open(resealed, ad); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("old ring opened a value sealed under the new key: err = %v", err)
	}

	// Once the old key is dropped, its values name an unknown key.
	dropped := newTestRing(t, newKey)
	if _, _, err := dropped.Open(sealed, ad); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Open after dropping the old key: err = %v, want ErrUnknownKey", err)
	}
}

// TestOpenUnknownKey checks that a value from another ring is reported as
// an unknown key, which start-up turns into a clear message, and not as
// corruption.
func TestOpenUnknownKey(t *testing.T) {
	ad := []byte("u")
	sealed, err := newTestRing(t, newTestKey(t)).Seal([]byte("x"), ad)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}

	other := newTestRing(t, newTestKey(t), newTestKey(t))
	_, _, err = other.Open(sealed, ad)
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("err = %v, want ErrUnknownKey", err)
	}
	if errors.Is(err, ErrCorrupt) {
		t.Errorf("an unknown key is also reported as corrupt: %v", err)
	}
}

// TestFormat builds a sealed value with the standard library alone, from the
// layout described in the package comment, and checks that Open accepts it.
func TestFormat(t *testing.T) {
	k := newTestKey(t)
	kr := newTestRing(t, k)
	ad := []byte("user-7")
	plaintext := []byte("made by hand")

	sum := sha256.Sum256(append([]byte("authsvc secretbox key id v1\x00"), k...))
	header := append([]byte{1}, sum[:4]...)
	nonce := make([]byte, 12)
	if _, err := rand.Read(nonce); err != nil {
		t.Fatalf("rand: %v", err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		t.Fatalf("aes: %v", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatalf("gcm: %v", err)
	}
	ct := gcm.Seal(nil, nonce, plaintext, append(bytes.Clone(header), ad...))
	sealed := append(append(bytes.Clone(header), nonce...), ct...)

	got, current, err := kr.Open(sealed, ad)
	if err != nil {
		t.Fatalf("Open of a hand-made value: %v", err)
	}
	if !current || !bytes.Equal(got, plaintext) {
		t.Errorf("Open = %q, %v; want %q, true", got, current, plaintext)
	}

	ours, err := kr.Seal(plaintext, ad)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if !bytes.Equal(ours[:headerLen], header) {
		t.Errorf("Seal header = %x, want %x", ours[:headerLen], header)
	}
	if bytes.Contains(ours, k[:8]) {
		t.Errorf("sealed value contains key material")
	}
}

// TestDerive checks that derived keys depend on purpose and key, and that
// previous keys derive what they did when they were current.
func TestDerive(t *testing.T) {
	a, b, c := newTestKey(t), newTestKey(t), newTestKey(t)
	kr := newTestRing(t, a, b, c)

	d1 := kr.Derive("recovery codes")
	if len(d1) != KeySize {
		t.Fatalf("Derive gave %d bytes, want %d", len(d1), KeySize)
	}
	if !bytes.Equal(d1, kr.Derive("recovery codes")) {
		t.Errorf("Derive is not deterministic")
	}
	if bytes.Equal(d1, kr.Derive("something else")) {
		t.Errorf("two purposes derive the same key")
	}
	if bytes.Equal(d1, a) {
		t.Errorf("Derive returned the key itself")
	}

	// Each previous key derives what it would derive as the current key.
	prev := kr.DerivePrevious("recovery codes")
	if len(prev) != 2 {
		t.Fatalf("DerivePrevious gave %d keys, want 2", len(prev))
	}
	for i, k := range [][]byte{b, c} {
		want := newTestRing(t, k).Derive("recovery codes")
		if !bytes.Equal(prev[i], want) {
			t.Errorf("DerivePrevious[%d] does not match that key's Derive", i)
		}
	}
	if len(newTestRing(t, a).DerivePrevious("x")) != 0 {
		t.Errorf("a ring without previous keys derived previous keys")
	}
}

// TestDeriveRFC5869 checks the HKDF construction against test case 3 of
// RFC 5869 (SHA-256, no salt, empty info); the first 32 bytes of its 42-byte
// output are what a 32-byte derivation yields.
func TestDeriveRFC5869(t *testing.T) {
	ikm := bytes.Repeat([]byte{0x0b}, 22)
	okm, err := hex.DecodeString("8da4e775a563c18f715f802a063c5a31" +
		"b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8")
	if err != nil {
		t.Fatal(err)
	}
	if got := derive(ikm, ""); !bytes.Equal(got, okm[:32]) {
		t.Errorf("derive = %x, want %x", got, okm[:32])
	}
}

// FuzzOpen feeds Open arbitrary input: it must never panic, must report
// only its documented errors, and must not change its input.
func FuzzOpen(f *testing.F) {
	k := bytes.Repeat([]byte{7}, KeySize)
	prev := bytes.Repeat([]byte{9}, KeySize)
	kr, err := NewKeyring(k, prev)
	if err != nil {
		f.Fatal(err)
	}
	oldRing, err := NewKeyring(prev)
	if err != nil {
		f.Fatal(err)
	}
	for _, r := range []*Keyring{kr, oldRing} {
		sealed, err := r.Seal([]byte("fuzz seed secret"), []byte("user"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sealed, []byte("user"))
		f.Add(sealed[:overhead], []byte("user"))
	}
	f.Add([]byte{}, []byte{})
	f.Add([]byte{1, 0, 0, 0, 0}, []byte("user"))
	f.Add(bytes.Repeat([]byte{1}, overhead), []byte(nil))

	f.Fuzz(func(t *testing.T, sealed, ad []byte) {
		orig := bytes.Clone(sealed)
		plaintext, current, err := kr.Open(sealed, ad)
		if !bytes.Equal(sealed, orig) {
			t.Fatalf("Open modified its input")
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("Open error %v is neither ErrCorrupt nor ErrUnknownKey", err)
			}
			if plaintext != nil || current {
				t.Fatalf("Open returned a result with an error")
			}
			return
		}
		// Whatever opens must survive a round trip.
		again, err := kr.Seal(plaintext, ad)
		if err != nil {
			t.Fatalf("Seal: %v", err)
		}
		back, cur, err := kr.Open(again, ad)
		if err != nil || !cur || !bytes.Equal(back, plaintext) {
			t.Fatalf("re-sealed value does not open: %v", err)
		}
	})
}

// BenchmarkSeal measures sealing a TOTP secret bound to a user id.
func BenchmarkSeal(b *testing.B) {
	kr := newTestRing(b, newTestKey(b))
	secret := bytes.Repeat([]byte{1}, 20)
	ad := []byte("0190c1a2-7e4b-7c3d-9a11-3f2e1d0c9b8a")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kr.Seal(secret, ad); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen measures opening a TOTP secret, as every code check does.
func BenchmarkOpen(b *testing.B) {
	kr := newTestRing(b, newTestKey(b), newTestKey(b))
	ad := []byte("0190c1a2-7e4b-7c3d-9a11-3f2e1d0c9b8a")
	sealed, err := kr.Seal(bytes.Repeat([]byte{1}, 20), ad)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := kr.Open(sealed, ad); err != nil {
			b.Fatal(err)
		}
	}
}
