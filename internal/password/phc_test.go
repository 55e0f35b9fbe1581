package password

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// tinyParams keeps hashing cheap in tests that are not about the cost.
var tinyParams = Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// The vectors below were computed with the argon2 command-line tool of the
// reference implementation (Debian package argon2 0~20171227), for example
//
//	printf '%s' 'correct horse battery staple' |
//		argon2 saltsaltsaltsalt -id -k 19456 -t 2 -p 1 -l 32 -e
var referenceVectors = []struct {
	name     string
	password string
	phc      string
}{
	{
		name:     "default cost",
		password: "correct horse battery staple",
		phc: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA" +
			"$QKHrg5tayLGcN+Y0HVPNaBqykOVLUxlMkZycXE1uWRM",
	},
	{
		name:     "small cost",
		password: "correct horse battery staple",
		phc: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA" +
			"$TUhCoV6YH8thtZpQqRp0JvQQ5ZYgiLA0LYApKDG6qtM",
	},
	{
		name:     "two lanes, UTF-8 password",
		password: "p\u00e4ssw\u00f6rd \u00fcn\u00efcode",
		phc: "$argon2id$v=19$m=256,t=3,p=2$YW5vdGhlci1zYWx0LTE2Yg" +
			"$Af6kHj+S0VWWAtYzW7W48t8srT14EzAY9+FEGQFu9+M",
	},
	{
		name:     "short salt and hash",
		password: "hunter2hunter2",
		phc:      "$argon2id$v=19$m=100,t=1,p=1$ZWlnaHRzYWw$+TXuASXyxCZ/FU3yUUwYUQ",
	},
}

// TestReferenceVectors verifies hashes made by the reference tool, and
// refuses them for a password one character longer.
func TestReferenceVectors(t *testing.T) {
	h := NewHasher(DefaultParams(), 2, 0)
	for _, tc := range referenceVectors {
		t.Run(tc.name, func(t *testing.T) {
			ok, _, err := h.Verify(context.Background(), tc.password, tc.phc)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !ok {
				t.Fatal("reference hash did not verify")
			}

			ok, _, err = h.Verify(context.Background(), tc.password+"x", tc.phc)
			if err != nil || ok {
				t.Fatalf("Verify(wrong password) = %v, %v; want false, nil", ok, err)
			}
		})
	}
}

// TestRawReferenceVector checks the raw Argon2id output, bypassing the PHC
// encoding, against the hex output of the reference tool (-r).
func TestRawReferenceVector(t *testing.T) {
	p := Params{Memory: 256, Time: 3, Threads: 2, SaltLen: 16, KeyLen: 32}
	got := deriveArgon2id([]byte("p\u00e4ssw\u00f6rd \u00fcn\u00efcode"),
		[]byte("another-salt-16b"), p)
	const want = "01fea41e3f92d1559602d6335bb5b8f2df2cad3d78133018f7e14419016ef7e3"
	if hex.EncodeToString(got) != want {
		t.Fatalf("IDKey = %x, want %s", got, want)
	}
}

// TestVerifyNormalizesPassword shows that a decomposed (NFD) password
// matches a hash of its composed form, and that the reference tool, which
// does not normalise, gives a different hash for the NFD bytes.
func TestVerifyNormalizesPassword(t *testing.T) {
	h := NewHasher(tinyParams, 1, 0)
	nfd := "pa\u0308ssw\u00f6rd \u00fcn\u00efcode"
	composedHash := referenceVectors[2].phc
	decomposedHash := "$argon2id$v=19$m=256,t=3,p=2$YW5vdGhlci1zYWx0LTE2Yg" +
		"$vS5LH57VWHDlmdUuxIxLcAW+0wL1CvCHdTmt+bWnhRE"

	ok, _, err := h.Verify(context.Background(), nfd, composedHash)
	if err != nil || !ok {
		t.Fatalf("Verify(NFD, hash of NFC) = %v, %v; want true, nil", ok, err)
	}
	ok, _, err = h.Verify(context.Background(), nfd, decomposedHash)
	if err != nil || ok {
		t.Fatalf("Verify(NFD, hash of raw NFD) = %v, %v; want false, nil", ok, err)
	}
}

// TestHashRoundTrip hashes, parses, re-encodes and verifies, with ASCII,
// CJK and empty passwords.
func TestHashRoundTrip(t *testing.T) {
	h := NewHasher(tinyParams, 2, 0)
	ctx := context.Background()

	for _, pw := range []string{"correct horse", "\u65e5\u672c\u8a9e\u306e\u30d1\u30b9", ""} {
		phc, err := h.Hash(ctx, pw)
		if err != nil {
			t.Fatalf("Hash: %v", err)
		}
		if !strings.HasPrefix(phc, "$argon2id$v=19$m=64,t=1,p=1$") {
			t.Fatalf("Hash = %q, unexpected prefix", phc)
		}

		dec, err := parsePHC(phc)
		if err != nil {
			t.Fatalf("parsePHC(Hash output): %v", err)
		}
		if dec.params != tinyParams {
			t.Fatalf("decoded params %+v, want %+v", dec.params, tinyParams)
		}
		if encodePHC(dec.params, dec.salt, dec.hash) != phc {
			t.Fatal("re-encoding changed the PHC string")
		}

		ok, rehash, err := h.Verify(ctx, pw, phc)
		if err != nil || !ok || rehash {
			t.Fatalf("Verify(right) = %v, %v, %v; want true, false, nil", ok, rehash, err)
		}
		ok, rehash, err = h.Verify(ctx, pw+"!", phc)
		if err != nil || ok || rehash {
			t.Fatalf("Verify(wrong) = %v, %v, %v; want false, false, nil", ok, rehash, err)
		}
	}
}

// TestHashUsesFreshSalt hashes one password twice and expects two hashes.
func TestHashUsesFreshSalt(t *testing.T) {
	h := NewHasher(tinyParams, 1, 0)
	a, err := h.Hash(context.Background(), "same password")
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.Hash(context.Background(), "same password")
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("two hashes of one password are equal; salt not random")
	}
}

// TestRehashDetection verifies one stored hash under changed parameters:
// any change asks for a rehash, but only after a successful match.
func TestRehashDetection(t *testing.T) {
	ctx := context.Background()
	old := NewHasher(tinyParams, 1, 0)
	phc, err := old.Hash(ctx, "a good long password")
	if err != nil {
		t.Fatal(err)
	}

	changed := func(f func(*Params)) Params {
		p := tinyParams
		f(&p)
		return p
	}
	tests := []struct {
		name       string
		params     Params
		wantRehash bool
	}{
		{"same", tinyParams, false},
		{"more memory", changed(func(p *Params) { p.Memory = 128 }), true},
		{"more passes", changed(func(p *Params) { p.Time = 2 }), true},
		{"more lanes", changed(func(p *Params) { p.Threads = 2 }), true},
		{"longer salt", changed(func(p *Params) { p.SaltLen = 32 }), true},
		{"longer hash", changed(func(p *Params) { p.KeyLen = 64 }), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHasher(tc.params, 1, 0)
			ok, rehash, err := h.Verify(ctx, "a good long password", phc)
			if err != nil || !ok {
				t.Fatalf("Verify = %v, %v; want true, nil", ok, err)
			}
			if rehash != tc.wantRehash {
				t.Fatalf("rehash = %v, want %v", rehash, tc.wantRehash)
			}

			ok, rehash, err = h.Verify(ctx, "a wrong password", phc)
			if err != nil || ok || rehash {
				t.Fatalf("Verify(wrong) = %v, %v, %v; want false, false, nil",
					ok, rehash, err)
			}
		})
	}
}

// TestMalformedPHC feeds broken or unsupported PHC strings to the parser
// and to Verify; both must refuse them with ErrMalformedHash.
func TestMalformedPHC(t *testing.T) {
	const (
		salt = "c2FsdHNhbHRzYWx0c2FsdA"
		hash = "TUhCoV6YH8thtZpQqRp0JvQQ5ZYgiLA0LYApKDG6qtM"
	)
	tests := []struct{ name, phc string }{
		{"empty", ""},
		{"dollar only", "$"},
		{"no leading dollar", "argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + hash},
		{"argon2i", "$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + hash},
		{"bcrypt", "$2b$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234"},
		{"old version", "$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + hash},
		{"version missing", "$argon2id$m=64,t=1,p=1$" + salt + "$" + hash},
		{"extra field", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + hash + "$"},
		{"params reordered", "$argon2id$v=19$t=1,m=64,p=1$" + salt + "$" + hash},
		{"param missing", "$argon2id$v=19$m=64,t=1$" + salt + "$" + hash},
		{"extra param", "$argon2id$v=19$m=64,t=1,p=1,k=2$" + salt + "$" + hash},
		{"zero passes", "$argon2id$v=19$m=64,t=0,p=1$" + salt + "$" + hash},
		{"zero lanes", "$argon2id$v=19$m=64,t=1,p=0$" + salt + "$" + hash},
		{"negative", "$argon2id$v=19$m=-64,t=1,p=1$" + salt + "$" + hash},
		{"plus sign", "$argon2id$v=19$m=+64,t=1,p=1$" + salt + "$" + hash},
		{"leading zero", "$argon2id$v=19$m=064,t=1,p=1$" + salt + "$" + hash},
		{"hex", "$argon2id$v=19$m=0x40,t=1,p=1$" + salt + "$" + hash},
		{"overflow", "$argon2id$v=19$m=4294967296,t=1,p=1$" + salt + "$" + hash},
		{"huge memory", "$argon2id$v=19$m=4294967295,t=1,p=1$" + salt + "$" + hash},
		{"memory below lanes", "$argon2id$v=19$m=64,t=1,p=9$" + salt + "$" + hash},
		{"too many passes", "$argon2id$v=19$m=64,t=65,p=1$" + salt + "$" + hash},
		{"too many lanes", "$argon2id$v=19$m=64,t=1,p=256$" + salt + "$" + hash},
		{"empty salt", "$argon2id$v=19$m=64,t=1,p=1$$" + hash},
		{"short salt", "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$" + hash},
		{"padded salt", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "==$" + hash},
		{"url-safe base64", "$argon2id$v=19$m=19456,t=2,p=1$" + salt +
			"$QKHrg5tayLGcN-Y0HVPNaBqykOVLUxlMkZycXE1uWRM"},
		{"non-canonical base64", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" +
			strings.TrimSuffix(hash, "M") + "N"},
		{"empty hash", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$"},
		{"short hash", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$TUhCoV6YH8thtZpQ"},
		{"line break in hash", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" +
			hash[:10] + "\n" + hash[10:]},
		{"space", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + hash + " "},
	}
	h := NewHasher(tinyParams, 1, 0)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parsePHC(tc.phc)
			if !errors.Is(err, ErrMalformedHash) {
				t.Fatalf("parsePHC error = %v, want ErrMalformedHash", err)
			}
			if strings.Contains(err.Error(), salt) {
				t.Fatalf("error %q quotes the input", err)
			}

			ok, rehash, err := h.Verify(context.Background(), "password", tc.phc)
			if !errors.Is(err, ErrMalformedHash) || ok || rehash {
				t.Fatalf("Verify = %v, %v, %v; want false, false, ErrMalformedHash",
					ok, rehash, err)
			}
		})
	}
}

// TestParamsValidate checks the limits on configured parameters.
func TestParamsValidate(t *testing.T) {
	tests := []struct {
		name    string
		params  Params
		wantErr bool
	}{
		{"zero takes defaults", Params{}, false},
		{"defaults", DefaultParams(), false},
		{"tiny", tinyParams, false},
		{"memory too small for lanes", Params{Memory: 15, Threads: 2}, true},
		{"memory too large", Params{Memory: maxMemory + 1}, true},
		{"too many passes", Params{Time: maxTime + 1}, true},
		{"short salt", Params{SaltLen: 4}, true},
		{"long salt", Params{SaltLen: 65}, true},
		{"short hash", Params{KeyLen: 8}, true},
		{"long hash", Params{KeyLen: 129}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.params.Validate()
			if (err != nil) != tc.wantErr {
				t.Fatalf("Validate() = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

// TestDefaultParamsMeetMinimum holds the defaults to the OWASP minimum and
// checks that zero parameters take them.
func TestDefaultParamsMeetMinimum(t *testing.T) {
	p := DefaultParams()
	if p.Memory < 19*1024 || p.Time < 2 || p.Threads < 1 || p.SaltLen < 16 || p.KeyLen < 32 {
		t.Fatalf("DefaultParams() = %+v, below the OWASP minimum", p)
	}
	if got := NewHasher(Params{}, 1, 0).Params(); got != p {
		t.Fatalf("NewHasher(Params{}).Params() = %+v, want %+v", got, p)
	}
}

// FuzzParsePHC checks that the parser never panics, wraps every error in
// ErrMalformedHash, and accepts only the one spelling it writes itself.
func FuzzParsePHC(f *testing.F) {
	for _, v := range referenceVectors {
		f.Add(v.phc)
	}
	f.Add("$argon2id$v=19$m=64,t=1,p=1$$")
	f.Add("$argon2id$v=19$m=0,t=0,p=0$AAAA$AAAA")
	f.Add("$$$$$")

	f.Fuzz(func(t *testing.T, s string) {
		dec, err := parsePHC(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedHash) {
				t.Fatalf("error %v does not wrap ErrMalformedHash", err)
			}
			return
		}
		// Each accepted hash has exactly one spelling.
		if got := encodePHC(dec.params, dec.salt, dec.hash); got != s {
			t.Fatalf("re-encoded %q as %q", s, got)
		}
		if err := dec.params.validate(); err != nil {
			t.Fatalf("accepted params fail Validate: %v", err)
		}
	})
}

// BenchmarkHash measures one hash with the default parameters.
func BenchmarkHash(b *testing.B) {
	h := NewHasher(DefaultParams(), 1, 0)
	ctx := context.Background()
	for b.Loop() {
		if _, err := h.Hash(ctx, "correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}
