package password

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// TestNormalize covers NFC, the length limits counted in code points after
// NFC, and invalid UTF-8.
func TestNormalize(t *testing.T) {
	tests := []struct {
		name    string
		pw      string
		want    string // when wantErr is nil
		wantErr error
	}{
		{"ascii", "a good password", "a good password", nil},
		{"composed stays", "caf\u00e9 au lait", "caf\u00e9 au lait", nil},
		{"decomposed composes", "cafe\u0301 au lait", "caf\u00e9 au lait", nil},
		{"7 ascii", "abcdefg", "", ErrTooShort},
		{"8 ascii", "abcdefgh", "abcdefgh", nil},
		{"7 two-byte", strings.Repeat("\u00e9", 7), "", ErrTooShort},
		{"8 two-byte", strings.Repeat("\u00e9", 8), strings.Repeat("\u00e9", 8), nil},
		// Eight code points as typed, four after NFC.
		{"8 NFD is 4 NFC", strings.Repeat("e\u0301", 4), "", ErrTooShort},
		{"256 three-byte", strings.Repeat("\u65e5", 256), strings.Repeat("\u65e5", 256), nil},
		{"257 three-byte", strings.Repeat("\u65e5", 257), "", ErrTooLong},
		{"256 four-byte", strings.Repeat("\U0001F511", 256),
			strings.Repeat("\U0001F511", 256), nil},
		{"257 four-byte", strings.Repeat("\U0001F511", 257), "", ErrTooLong},
		// 300 code points as typed, 150 after NFC: accepted, not truncated.
		{"300 NFD is 150 NFC", strings.Repeat("e\u0301", 150),
			strings.Repeat("\u00e9", 150), nil},
		{"empty", "", "", ErrTooShort},
		{"invalid byte", "abcdefgh\xff", "", ErrInvalidUTF8},
		{"lone surrogate", "abcdefgh\xed\xa0\x80", "", ErrInvalidUTF8},
		{"truncated rune", "abcdefgh\xe6\x97", "", ErrInvalidUTF8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Normalize(tc.pw)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !errors.Is(err, ErrWeak) {
					t.Fatalf("Normalize error = %v, want %v (and ErrWeak)", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			if got != tc.want {
				t.Fatalf("Normalize = %q, want %q", got, tc.want)
			}
			if !norm.NFC.IsNormalString(got) {
				t.Fatal("result is not NFC")
			}
		})
	}
}

// TestNormalizeNFCAndNFDAgree normalises composed and decomposed spellings
// to the same string.
func TestNormalizeNFCAndNFDAgree(t *testing.T) {
	pairs := [][2]string{
		{"P\u00e4ssw\u00f6rter sind lang", "Pa\u0308sswo\u0308rter sind lang"},
		{"\uac00\ub098\ub2e4\ub77c\ub9c8\ubc14\uc0ac\uc544", // Hangul syllables
			"\u1100\u1161\u1102\u1161\u1103\u1161\u1105\u1161" +
				"\u1106\u1161\u1107\u1161\u1109\u1161\u110b\u1161"},
		{"\u1e9b\u0323 and more", "\u017f\u0323\u0307 and more"},
	}
	for _, p := range pairs {
		a, errA := Normalize(p[0])
		b, errB := Normalize(p[1])
		if errA != nil || errB != nil {
			t.Fatalf("Normalize errors: %v, %v", errA, errB)
		}
		if a != b {
			t.Fatalf("NFC and NFD inputs normalise differently: %q vs %q", a, b)
		}
	}
}

// TestCheck covers the common list, the email rule and the repeated length
// and UTF-8 checks.
func TestCheck(t *testing.T) {
	tests := []struct {
		name    string
		pw      string
		email   string
		wantErr error
	}{
		{"fine", "violet staircase umbrella", "alice@example.com", nil},
		{"common", "password", "alice@example.com", ErrCommon},
		{"common upper", "PASSWORD", "alice@example.com", ErrCommon},
		{"common mixed", "TrustNo1", "alice@example.com", ErrCommon},
		{"common full-width", "\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44",
			"alice@example.com", ErrCommon},
		{"common digits", "12345678", "alice@example.com", ErrCommon},
		{"common plus a char", "password!?", "alice@example.com", nil},
		{"is email", "alice.smith@example.com", "alice.smith@example.com", ErrIsEmail},
		{"is email other case", "Alice.Smith@Example.COM", "alice.smith@example.com",
			ErrIsEmail},
		{"is email typed with spaces", "alice.smith@example.com",
			" alice.smith@example.com ", ErrIsEmail},
		{"is email non-ascii", "stra\u00dfe@example.de", "STRASSE@example.de", ErrIsEmail},
		{"local part allowed", "alice.smith", "alice.smith@example.com", nil},
		{"email is a substring", "alice.smith@example.com!", "alice.smith@example.com", nil},
		{"no email", "violet staircase", "", nil},
		{"too short", "abc", "alice@example.com", ErrTooShort},
		{"too long", strings.Repeat("\u00e9", 257), "alice@example.com", ErrTooLong},
		{"invalid utf-8", "abcdefgh\xff", "alice@example.com", ErrInvalidUTF8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.pw, tc.email)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || !errors.Is(err, ErrWeak) {
				t.Fatalf("Check = %v, want %v (and ErrWeak)", err, tc.wantErr)
			}
		})
	}
}

// TestReasonsDoNotEchoPassword uses passwords that share no text with the
// fixed reasons, so any appearance would be an echo.
func TestReasonsDoNotEchoPassword(t *testing.T) {
	tests := []struct{ pw, email string }{
		{"qz7", "x@example.com"},
		{strings.Repeat("qz7", 100), "x@example.com"},
		{"TRUSTNO1", "x@example.com"},
		{"qz7qz7@example.com", "QZ7QZ7@example.com"},
		{"qz7qz7qz7\xff", "x@example.com"},
	}
	for _, tc := range tests {
		err := Check(tc.pw, tc.email)
		var weak *WeakError
		if !errors.As(err, &weak) {
			t.Fatalf("Check(%q) = %v, want a WeakError", tc.pw, err)
		}
		low := strings.ToLower(err.Error())
		if strings.Contains(low, "qz7") || strings.Contains(low, "trustno1") {
			t.Fatalf("error %q echoes the password", err)
		}
		if weak.Reason == "" {
			t.Fatal("empty reason")
		}
	}
}

// TestCommonList checks the shipped list: its size, its form, and that
// every entry is refused upper-cased.
func TestCommonList(t *testing.T) {
	if len(common) < 10000 {
		t.Fatalf("common list has %d entries, want the full shipped list", len(common))
	}

	var entries int
	for line := range strings.Lines(commonList) {
		line = strings.TrimRight(line, "\n")
		if strings.HasPrefix(line, "#") {
			continue
		}
		entries++
		if n := utf8.RuneCountInString(line); n < MinLength {
			t.Fatalf("entry of %d code points; the list keeps only %d or more", n, MinLength)
		}
		if line != strings.ToLower(line) || strings.TrimSpace(line) != line {
			t.Fatalf("entry %q is not lower-case and trimmed", line)
		}
		if err := Check(strings.ToUpper(line), ""); !errors.Is(err, ErrCommon) {
			t.Fatalf("Check(upper-cased entry %q) = %v, want ErrCommon", line, err)
		}
	}
	if entries != len(common) {
		t.Fatalf("list has %d lines but %d distinct entries", entries, len(common))
	}
}

// TestParseListSkipsCommentsAndBlanks reads a small list with a header,
// a blank line and a CRLF line end.
func TestParseListSkipsCommentsAndBlanks(t *testing.T) {
	set := parseList("# header\n\nFirstOne\r\nsecondone\n")
	if len(set) != 2 {
		t.Fatalf("parseList kept %d entries, want 2", len(set))
	}
	for _, k := range []string{"firstone", "secondone"} {
		if _, ok := set[k]; !ok {
			t.Fatalf("parseList lost %q", k)
		}
	}
}
