package twofactor

import (
	"bytes"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
)

// shownCode is the form in which recovery codes are handed out.
var shownCode = regexp.MustCompile(`^[0-9a-hjkmnp-tv-z]{4}(-[0-9a-hjkmnp-tv-z]{4}){3}$`)

// TestNewRecoveryCodes checks the shown form of a set of codes, that each
// normalizes to its symbols, and that no code repeats within the set.
func TestNewRecoveryCodes(t *testing.T) {
	codes, err := NewRecoveryCodes(RecoveryCodeCount)
	if err != nil {
		t.Fatalf("NewRecoveryCodes: %v", err)
	}
	if len(codes) != RecoveryCodeCount {
		t.Fatalf("got %d codes, want %d", len(codes), RecoveryCodeCount)
	}

	seen := map[string]bool{}
	for _, c := range codes {
		if !shownCode.MatchString(c) {
			t.Errorf("code %q is not of the form xxxx-xxxx-xxxx-xxxx", c)
		}
		norm, ok := NormalizeRecoveryCode(c)
		if !ok {
			t.Errorf("NormalizeRecoveryCode refuses the generated code %q", c)
		}
		if norm != strings.ReplaceAll(c, "-", "") {
			t.Errorf("code %q normalizes to %q", c, norm)
		}
		if seen[norm] {
			t.Errorf("code %q appears twice in one set", c)
		}
		seen[norm] = true
	}

	for _, n := range []int{0, -1} {
		if _, err := NewRecoveryCodes(n); err == nil {
			t.Errorf("NewRecoveryCodes(%d) did not fail", n)
		}
	}
}

// TestRecoveryCodesDrawAgainOnRepeat feeds the set builder a source that
// repeats itself, standing in for the random source repeating a code.
func TestRecoveryCodesDrawAgainOnRepeat(t *testing.T) {
	draws := []string{"aaaa", "bbbb", "aaaa", "bbbb", "cccc", "aaaa", "dddd"}
	next := func() (string, error) {
		if len(draws) == 0 {
			t.Fatal("drew more codes than needed")
		}
		c := draws[0]
		draws = draws[1:]
		return c, nil
	}

	codes, err := recoveryCodes(4, next)
	if err != nil {
		t.Fatalf("recoveryCodes: %v", err)
	}
	if got, want := strings.Join(codes, ","), "aaaa,bbbb,cccc,dddd"; got != want {
		t.Errorf("codes = %s, want %s", got, want)
	}
	if len(draws) != 0 {
		t.Errorf("%d draws left over", len(draws))
	}
}

// TestNewRecoveryCodesUseWholeAlphabet checks that every symbol turns up at
// every position, which a code with fewer than 80 random bits would miss.
// With 4000 codes each (position, symbol) pair is expected 125 times; the
// chance that any of the 512 pairs never appears is below 1e-50.
func TestNewRecoveryCodesUseWholeAlphabet(t *testing.T) {
	codes, err := NewRecoveryCodes(4000)
	if err != nil {
		t.Fatalf("NewRecoveryCodes: %v", err)
	}

	var counts [16][32]int
	for _, c := range codes {
		norm, ok := NormalizeRecoveryCode(c)
		if !ok {
			t.Fatalf("generated code %q does not normalize", c)
		}
		for pos := range len(norm) {
			counts[pos][strings.IndexByte(recoveryAlphabet, norm[pos])]++
		}
	}
	for pos := range counts {
		for sym, n := range counts[pos] {
			if n == 0 {
				t.Errorf("symbol %q never appears at position %d", recoveryAlphabet[sym], pos)
			}
		}
	}
}

// TestNormalizeRecoveryCode covers the spellings users type: any case,
// spaces and hyphens anywhere; and look-alikes that must not pass.
func TestNormalizeRecoveryCode(t *testing.T) {
	const norm = "0123456789abcdef"
	tests := []struct {
		in   string
		want string // "" for invalid
	}{
		{"0123-4567-89ab-cdef", norm},
		{norm, norm},
		{"0123-4567-89AB-CDEF", norm},
		{" 0123 4567 89aB cDeF ", norm},
		{"--0123--4567-89ab-cdef--", norm},
		{"0-1-2-3-4-5-6-7-8-9-a-b-c-d-e-f", norm},
		{"ghjk-mnpq-rstv-wxyz", "ghjkmnpqrstvwxyz"},
		{"GHJK-MNPQ-RSTV-WXYZ", "ghjkmnpqrstvwxyz"},
		{"", ""},
		{"----", ""},
		{"0123-4567-89ab-cde", ""},    // 15 symbols
		{"0123-4567-89ab-cdef-0", ""}, // 17 symbols
		{"0123-4567-89ab-cdei", ""},   // i is not a symbol
		{"0123-4567-89ab-cdel", ""},   // nor l
		{"0123-4567-89ab-cdeo", ""},   // nor o
		{"0123-4567-89ab-cdeu", ""},   // nor u
		{"0123_4567_89ab_cdef", ""},   // underscores
		{"0123\t4567-89ab-cdef", ""},  // a tab
		{"0123\u00a04567-89ab-cdef", ""},
		{"0123\u20104567-89ab-cdef", ""}, // Unicode hyphen
		{"0123-4567-89ab-cde\u212a", ""}, // Kelvin sign, folds to k
		{"0123-4567-89ab-cdeｆ", ""},      // full-width f
		{"0123-4567-89ab-cdе", ""},       // Cyrillic e
		{"0123-4567-89ab-cde\xff", ""},   // invalid UTF-8
		{strings.Repeat("a", 1000), ""},
	}
	for _, tt := range tests {
		got, ok := NormalizeRecoveryCode(tt.in)
		if ok != (tt.want != "") || got != tt.want {
			t.Errorf("NormalizeRecoveryCode(%q) = %q, %v; want %q, %v",
				tt.in, got, ok, tt.want, tt.want != "")
		}
	}
}

func TestHashRecoveryCode(t *testing.T) {
	// RFC 4231 test case 2 checks the HMAC-SHA-256 construction.
	want, err := hex.DecodeString(
		"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
	if err != nil {
		t.Fatal(err)
	}
	got := HashRecoveryCode([]byte("Jefe"), "what do ya want for nothing?")
	if !bytes.Equal(got, want) {
		t.Errorf("HashRecoveryCode = %x, want %x", got, want)
	}

	// Spellings of one code hash alike once normalized; keys and codes
	// change the hash.
	key := bytes.Repeat([]byte{1}, 32)
	a, _ := NormalizeRecoveryCode("ABCD-efgh-2345-6789")
	b, _ := NormalizeRecoveryCode("abcd efgh 2345 6789")
	if !bytes.Equal(HashRecoveryCode(key, a), HashRecoveryCode(key, b)) {
		t.Errorf("two spellings of one code hash differently")
	}
	if bytes.Equal(HashRecoveryCode(key, a), HashRecoveryCode(bytes.Repeat([]byte{2}, 32), a)) {
		t.Errorf("two keys give the same hash")
	}
	if bytes.Equal(HashRecoveryCode(key, a), HashRecoveryCode(key, "abcdefgh23456788")) {
		t.Errorf("two codes give the same hash")
	}
}

// symbolsOnly matches 16 symbols of the alphabet in either case, spelled
// out so that Unicode case folding plays no part.
var symbolsOnly = regexp.MustCompile(`^[0-9a-hjkmnp-tv-zA-HJKMNP-TV-Z]{16}$`)

// FuzzNormalizeRecoveryCode compares NormalizeRecoveryCode with a regular
// expression over the input stripped of spaces and hyphens.
func FuzzNormalizeRecoveryCode(f *testing.F) {
	for _, s := range []string{
		"0123-4567-89ab-cdef", "ABCD EFGH JKMN PQRS", "0123-4567-89ab-cde\u212a", "", "-",
		"iloU-iloU-iloU-iloU",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := NormalizeRecoveryCode(s)
		stripped := strings.NewReplacer(" ", "", "-", "").Replace(s)
		if ok != symbolsOnly.MatchString(stripped) {
			t.Fatalf("NormalizeRecoveryCode(%q) ok = %v, stripped form %q", s, ok, stripped)
		}
		if !ok {
			if got != "" {
				t.Fatalf("NormalizeRecoveryCode(%q) returned %q with false", s, got)
			}
			return
		}
		// Only ASCII letters were lowered, so byte lengths agree.
		if got != strings.ToLower(stripped) || len(got) != len(stripped) {
			t.Fatalf("NormalizeRecoveryCode(%q) = %q, want %q", s, got, strings.ToLower(stripped))
		}
		if again, ok := NormalizeRecoveryCode(formatRecoveryCode(got)); !ok || again != got {
			t.Fatalf("the shown form of %q does not normalize back", got)
		}
	})
}

func BenchmarkNewRecoveryCodes(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewRecoveryCodes(RecoveryCodeCount); err != nil {
			b.Fatal(err)
		}
	}
}
