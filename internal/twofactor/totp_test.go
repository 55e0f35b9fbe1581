package twofactor

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// rfcSecret is the SHA1 secret of RFC 4226 Appendix D and RFC 6238
// Appendix B.
var rfcSecret = []byte("12345678901234567890")

// TestCodeRFC4226 checks the HOTP core that every TOTP code comes from.
func TestCodeRFC4226(t *testing.T) {
	// RFC 4226 Appendix D: HOTP values for counters 0 to 9.
	want := []string{
		"755224", "287082", "359152", "969429", "338314",
		"254676", "287922", "162583", "399871", "520489",
	}
	for counter, w := range want {
		if got := Code(rfcSecret, int64(counter)); got != w {
			t.Errorf("Code(counter %d) = %s, want %s", counter, got, w)
		}
	}
}

// TestCodeRFC6238 checks steps and codes at the times of the RFC's table,
// the last one beyond 2038.
func TestCodeRFC6238(t *testing.T) {
	// RFC 6238 Appendix B, SHA1 rows: the last six of the eight digits.
	tests := []struct {
		unix int64
		step int64
		want string
	}{
		{59, 0x1, "287082"},
		{1111111109, 0x23523EC, "081804"},
		{1111111111, 0x23523ED, "050471"},
		{1234567890, 0x273EF07, "005924"},
		{2000000000, 0x3F940AA, "279037"},
		{20000000000, 0x27BC86AA, "353130"},
	}
	for _, tt := range tests {
		now := time.Unix(tt.unix, 0)
		if got := Step(now); got != tt.step {
			t.Errorf("Step(%d) = %#x, want %#x", tt.unix, got, tt.step)
		}
		if got := Code(rfcSecret, Step(now)); got != tt.want {
			t.Errorf("code at %d = %s, want %s", tt.unix, got, tt.want)
		}
	}
}

// TestStep checks step boundaries, including times before 1970, which
// must round down like every other time.
func TestStep(t *testing.T) {
	tests := []struct {
		unix int64
		want int64
	}{
		{0, 0},
		{29, 0},
		{30, 1},
		{59, 1},
		{60, 2},
		{-1, -1},
		{-30, -1},
		{-31, -2},
	}
	for _, tt := range tests {
		if got := Step(time.Unix(tt.unix, 0)); got != tt.want {
			t.Errorf("Step(%d) = %d, want %d", tt.unix, got, tt.want)
		}
	}

	// Fractions of a second and time zones do not matter.
	at := time.Date(2033, 5, 18, 3, 33, 29, 999999999, time.FixedZone("X", 5*3600+1800))
	if got, want := Step(at), at.Unix()/Period; got != want {
		t.Errorf("Step(%v) = %d, want %d", at, got, want)
	}
}

// TestNormalizeCode accepts six ASCII digits with ASCII spaces anywhere
// and refuses other white space and digits of other scripts.
func TestNormalizeCode(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" for invalid
	}{
		{"123456", "123456"},
		{"000000", "000000"},
		{" 123456 ", "123456"},
		{"123 456", "123456"},
		{"1 2 3 4 5 6", "123456"},
		{"   12   34 56   ", "123456"},
		{"", ""},
		{"      ", ""},
		{"12345", ""},
		{"1234567", ""},
		{"12345a", ""},
		{"123-456", ""},
		{"123\t456", ""},
		{"123456\n", ""},
		{"123\u00a0456", ""}, // no-break space
		{"１２３４５６", ""},       // full-width digits
		{"١٢٣٤٥٦", ""},       // Arabic-Indic digits
		{"12345\u0660", ""},  // one Arabic-Indic zero
		{"+12345", ""},       // a sign
		{"123456\x00", ""},   // NUL
		{"12345\xb6", ""},    // invalid UTF-8
		{"０12345", ""},       // one full-width digit
		{strings.Repeat("1", 600), ""},
	}
	for _, tt := range tests {
		got, ok := NormalizeCode(tt.in)
		if ok != (tt.want != "") || got != tt.want {
			t.Errorf("NormalizeCode(%q) = %q, %v; want %q, %v",
				tt.in, got, ok, tt.want, tt.want != "")
		}
	}
}

// TestVerify covers the window of one step either side, the steps just
// outside it, and the refusal of steps up to the last one accepted.
func TestVerify(t *testing.T) {
	secret := []byte("a twenty byte secret")
	now := time.Unix(1_700_000_015, 0)
	cur := Step(now)
	codeAt := func(offset int64) string { return Code(secret, cur+offset) }

	// Neighbouring steps of this secret must have different codes, or the
	// skew cases below would not tell steps apart.
	seen := map[string]bool{}
	for off := int64(-2); off <= 2; off++ {
		if seen[codeAt(off)] {
			t.Fatalf("test secret has repeated codes around step %d", cur)
		}
		seen[codeAt(off)] = true
	}

	tests := []struct {
		name     string
		code     string
		lastStep int64
		want     int64
		wantErr  error
	}{
		{"current step", codeAt(0), 0, cur, nil},
		{"one step early", codeAt(-1), 0, cur - 1, nil},
		{"one step late", codeAt(1), 0, cur + 1, nil},
		{"two steps early", codeAt(-2), 0, 0, ErrInvalidCode},
		{"two steps late", codeAt(2), 0, 0, ErrInvalidCode},
		{"with spaces", " " + codeAt(0)[:3] + " " + codeAt(0)[3:] + " ", 0, cur, nil},
		{"malformed", "12345", 0, 0, ErrInvalidCode},
		{"empty", "", 0, 0, ErrInvalidCode},
		{"replayed", codeAt(0), cur, 0, ErrCodeUsed},
		{"earlier after later", codeAt(-1), cur, 0, ErrCodeUsed},
		{"current after earlier", codeAt(0), cur - 1, cur, nil},
		{"later after current", codeAt(1), cur, cur + 1, nil},
		{"anything after a future step", codeAt(1), cur + 1, 0, ErrCodeUsed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			step, err := Verify(secret, tt.code, now, tt.lastStep)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify error = %v, want %v", err, tt.wantErr)
			}
			if step != tt.want {
				t.Errorf("Verify step = %d, want %d", step, tt.want)
			}
		})
	}

	// A wrong code is refused whatever lastStep is.
	wrong := "000000"
	for seen[wrong] {
		wrong = fmt.Sprintf("%06d", rand.IntN(1_000_000))
	}
	if _, err := Verify(secret, wrong, now, 0); !errors.Is(err, ErrInvalidCode) {
		t.Errorf("wrong code: err = %v, want ErrInvalidCode", err)
	}
	if _, err := Verify([]byte("another secret of 20"), codeAt(0), now, 0); err == nil {
		t.Errorf("a code of one secret was accepted for another")
	}
}

// TestVerifySequence plays a user signing in repeatedly, storing each
// accepted step as the caller would, and checks that no code passes twice.
func TestVerifySequence(t *testing.T) {
	secret := []byte("12345678901234567890")
	start := time.Unix(1_800_000_000, 0)
	var last int64

	for i := range 10 {
		now := start.Add(time.Duration(i*Period) * time.Second)
		code := Code(secret, Step(now))
		step, err := Verify(secret, code, now, last)
		if err != nil {
			t.Fatalf("round %d: first use: %v", i, err)
		}
		last = step

		// The same code, a moment later and still within the window.
		later := now.Add(20 * time.Second)
		if _, err := Verify(secret, code, later, last); !errors.Is(err, ErrCodeUsed) {
			t.Fatalf("round %d: replay: err = %v, want ErrCodeUsed", i, err)
		}
	}
}

// TestCodeOathtool compares codes with those of oathtool, an independent
// implementation, for random secrets and times.
func TestCodeOathtool(t *testing.T) {
	oathtool := lookTool(t, "oathtool", "oathtool")
	n := 60
	if testing.Short() {
		n = 10
	}

	rng := rand.New(rand.NewPCG(7, 11))
	for i := range n {
		secret := make([]byte, SecretSize)
		for j := range secret {
			secret[j] = byte(rng.UintN(256))
		}
		// Times from 1970 to beyond 2106, when steps no longer fit 32 bits.
		unix := rng.Int64N(5_000_000_000)
		if i == 0 {
			unix = 0
		}
		encoded := EncodeSecret(secret)

		out, err := exec.Command(oathtool, "--totp", "-b",
			"--now", fmt.Sprintf("@%d", unix), encoded).Output()
		if err != nil {
			t.Fatalf("oathtool for %s at %d: %v", encoded, unix, err)
		}
		want := strings.TrimSpace(string(out))
		if got := Code(secret, Step(time.Unix(unix, 0))); got != want {
			t.Errorf("secret %s at %d: Code = %s, oathtool = %s", encoded, unix, got, want)
		}
	}
}

var sixDigits = regexp.MustCompile(`^[0-9]{6}$`)

// FuzzNormalizeCode compares NormalizeCode with a regular expression over
// the input stripped of spaces.
func FuzzNormalizeCode(f *testing.F) {
	for _, s := range []string{
		"123456", " 123 456 ", "12345", "１２３４５６", "123\t456", "", "1 2 3 4 5 6 7",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := NormalizeCode(s)
		stripped := strings.ReplaceAll(s, " ", "")
		if ok != sixDigits.MatchString(stripped) {
			t.Fatalf("NormalizeCode(%q) ok = %v, stripped form %q", s, ok, stripped)
		}
		if !ok {
			if got != "" {
				t.Fatalf("NormalizeCode(%q) returned %q with false", s, got)
			}
			return
		}
		if got != stripped {
			t.Fatalf("NormalizeCode(%q) = %q, want %q", s, got, stripped)
		}
		if again, ok := NormalizeCode(got); !ok || again != got {
			t.Fatalf("NormalizeCode is not idempotent on %q", got)
		}
	})
}

// BenchmarkVerify measures the worst case of a valid code: the match is
// the last of the three steps computed.
func BenchmarkVerify(b *testing.B) {
	secret := bytes.Repeat([]byte{0x3c}, SecretSize)
	now := time.Unix(1_700_000_000, 0)
	code := Code(secret, Step(now)+1) // the last step tried
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Verify(secret, code, now, 0); err != nil {
			b.Fatal(err)
		}
	}
}
