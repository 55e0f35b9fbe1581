package identity

import (
	"errors"
	"strings"
	"testing"
)

// TestSameAccount lists spellings that must name one account.
func TestSameAccount(t *testing.T) {
	tests := []struct {
		name      string
		spellings []string
		canonical string
	}{
		{"case", []string{"Alice@Example.COM", "alice@example.com", "ALICE@EXAMPLE.COM"},
			"alice@example.com"},
		{"composed and decomposed é",
			[]string{"jos\u00e9@example.com", "jose\u0301@example.com", "JOS\u00c9@example.com",
				"JOSE\u0301@example.com"},
			"jos\u00e9@example.com"},
		{"full-width letters",
			[]string{"\uff41\uff4c\uff49\uff43\uff45@example.com", // ａｌｉｃｅ
				"\uff21\uff2c\uff29\uff23\uff25@example.com", "alice@example.com"},
			"alice@example.com"},
		{"full-width dot in local part", []string{"a\uff0eb@example.com", "a.b@example.com"},
			"a.b@example.com"},
		{"sharp s folds to ss",
			[]string{"stra\u00dfe@example.de", "STRASSE@example.de", "strasse@example.de",
				"stra\u1e9ee@example.de"}, // U+1E9E capital sharp s
			"strasse@example.de"},
		{"final and medial sigma",
			[]string{"\u03c3\u03bf\u03c6\u03b9\u03b1\u03c2@example.gr", // σοφιας
				"\u03c3\u03bf\u03c6\u03b9\u03b1\u03c3@example.gr",  // σοφιασ
				"\u03a3\u039f\u03a6\u0399\u0391\u03a3@example.gr"}, // ΣΟΦΙΑΣ
			"\u03c3\u03bf\u03c6\u03b9\u03b1\u03c3@example.gr"},
		{"Kelvin sign", []string{"\u212aelvin@example.com", "Kelvin@example.com"},
			"kelvin@example.com"},
		{"ligature", []string{"\ufb01nn@example.com", "FINN@example.com"}, "finn@example.com"},
		{"international domain",
			[]string{"x@b\u00fccher.example", "x@xn--bcher-kva.example", "x@B\u00dcCHER.example",
				"x@XN--BCHER-KVA.EXAMPLE", "x@bu\u0308cher.example"},
			"x@xn--bcher-kva.example"},
		{"ideographic full stop in domain",
			[]string{"x@example\u3002com", "x@example.com"}, "x@example.com"},
		{"full-width domain", []string{"x@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com"},
			"x@example.com"},
		{"surrounding spaces", []string{"  alice@example.com ", "alice@example.com"},
			"alice@example.com"},
		{"non-ascii local part kept",
			// 用户@例子.广告; Python's IDNA codec gives the same ASCII domain.
			[]string{"\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a"},
			"\u7528\u6237@xn--fsqu00a.xn--4rr70v"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, s := range tc.spellings {
				e, err := ParseEmail(s)
				if err != nil {
					t.Fatalf("ParseEmail(%q): %v", s, err)
				}
				if e.Canonical != tc.canonical {
					t.Errorf("ParseEmail(%q).Canonical = %q, want %q",
						s, e.Canonical, tc.canonical)
				}
			}
		})
	}
}

// TestDifferentAccounts lists pairs that look alike but must stay apart.
func TestDifferentAccounts(t *testing.T) {
	tests := []struct{ name, a, b string }{
		// Default case folding has no Turkish rules: dotless ı stays ı,
		// and İ folds to i with a combining dot above.
		{"dotless i", "\u0131van@example.com", "ivan@example.com"},
		{"dotted capital I", "\u0130van@example.com", "ivan@example.com"},
		{"accent matters", "jos\u00e9@example.com", "jose@example.com"},
		{"dots matter", "a.b@example.com", "ab@example.com"},
		{"plus tags matter", "a+b@example.com", "a@example.com"},
		// Non-transitional IDNA keeps ß in domains.
		{"sharp s in domain", "x@stra\u00dfe.de", "x@strasse.de"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseEmail(tc.a)
			if err != nil {
				t.Fatalf("ParseEmail(%q): %v", tc.a, err)
			}
			b, err := ParseEmail(tc.b)
			if err != nil {
				t.Fatalf("ParseEmail(%q): %v", tc.b, err)
			}
			if a.Canonical == b.Canonical {
				t.Fatalf("%q and %q share canonical form %q", tc.a, tc.b, a.Canonical)
			}
		})
	}
}

// TestTypedForm checks that the typed form keeps case and compatibility
// characters and only trims spaces and composes.
func TestTypedForm(t *testing.T) {
	tests := []struct{ in, typed string }{
		{"Alice@Example.COM", "Alice@Example.COM"},
		{"  Alice@Example.COM  ", "Alice@Example.COM"},
		{"JOSE\u0301@B\u00dcCHER.example", "JOS\u00c9@B\u00dcCHER.example"},
		{"\uff41lice@example.com", "\uff41lice@example.com"},
	}
	for _, tc := range tests {
		e, err := ParseEmail(tc.in)
		if err != nil {
			t.Fatalf("ParseEmail(%q): %v", tc.in, err)
		}
		if e.Typed != tc.typed || e.String() != tc.typed {
			t.Errorf("ParseEmail(%q).Typed = %q, want %q", tc.in, e.Typed, tc.typed)
		}
	}
}

// TestRefused lists addresses that must be refused and the rule that
// refuses each.
func TestRefused(t *testing.T) {
	// 64-octet local part, then labels to reach the length wanted.
	local := strings.Repeat("a", 64)
	label := strings.Repeat("b", 61)
	at254 := local + "@" + label + "." + label + "." + label + ".com"
	at255 := local + "@" + label + "." + label + "." + label + "b.com"
	if len(at254) != 254 || len(at255) != 255 {
		t.Fatalf("length fixtures are %d and %d octets", len(at254), len(at255))
	}
	if _, err := ParseEmail(at254); err != nil {
		t.Fatalf("254-octet address refused: %v", err)
	}
	// 254 octets in NFC, 329 as typed in decomposed Hangul jamo.
	jamo := strings.Repeat("\u1100\u1161", 25) + "@" + label + "." + label + "." +
		label[:50] + ".com"
	if e, err := ParseEmail(jamo); err != nil || len(e.Typed) != 254 {
		t.Fatalf("decomposed address of 254 octets in NFC: %+v, %v", e, err)
	}

	tests := []struct{ name, in, why string }{
		{"empty", "", "one @"},
		{"spaces only", "   ", "one @"},
		{"no at", "alice.example.com", "one @"},
		{"two ats", "alice@bob@example.com", "one @"},
		{"empty local part", "@example.com", "empty local"},
		{"empty domain", "alice@", "empty domain"},
		{"display name", "Alice <alice@example.com>", "whitespace"},
		{"angle brackets", "<alice@example.com>", "not allowed"},
		{"quoted local part", "\"alice\"@example.com", "not allowed"},
		{"quoted at", "\"a@b\"@example.com", "one @"},
		{"comment", "alice(home)@example.com", "not allowed"},
		{"inner space", "ali ce@example.com", "whitespace"},
		{"tab", "alice@example.com\t", "control"},
		{"no-break space", "alice\u00a0@example.com", "whitespace"},
		{"ideographic space", "alice@example.com\u3000", "whitespace"},
		{"newline", "alice@example.com\n", "control"},
		{"NUL", "alice\x00@example.com", "control"},
		{"DEL", "alice\x7f@example.com", "control"},
		{"C1 control", "alice\u0085@example.com", "control"},
		{"RLO", "alice\u202e@example.com", "formatting"},
		{"LRE", "\u202aalice@example.com", "formatting"},
		{"RLI", "alice@exa\u2067mple.com", "formatting"},
		{"LRM", "alice\u200e@example.com", "formatting"},
		{"RLM", "alice@example.com\u200f", "formatting"},
		{"zero-width space", "ali\u200bce@example.com", "formatting"},
		{"zero-width joiner", "ali\u200dce@example.com", "formatting"},
		{"zero-width no-break space", "\ufeffalice@example.com", "formatting"},
		{"soft hyphen in domain", "alice@exam\u00adple.com", "formatting"},
		{"colon", "alice:x@example.com", "colon"},
		{"full-width colon", "alice\uff1ax@example.com", "not allowed"},
		{"full-width at", "alice\uff20bob@example.com", "not allowed"},
		{"leading dot", ".alice@example.com", "empty atom"},
		{"trailing dot", "alice.@example.com", "empty atom"},
		{"double dot", "al..ice@example.com", "empty atom"},
		{"comma", "alice,bob@example.com", "not allowed"},
		{"backslash", "alice\\@example.com", "not allowed"},
		{"emoji in local part", "alice\U0001F600@example.com", "not allowed"},
		{"combining mark starts atom", "\u0301alice@example.com", "combining"},
		{"single-label domain", "alice@localhost", "two labels"},
		{"trailing root dot", "alice@example.com.", "empty label"},
		{"empty label", "alice@example..com", "internationalised"},
		{"leading dot in domain", "alice@.example.com", "internationalised"},
		{"IP literal", "alice@[127.0.0.1]", "internationalised"},
		{"IP address", "alice@127.0.0.1", "digits"},
		{"underscore in domain", "alice@ex_ample.com", "internationalised"},
		{"hyphen at label start", "alice@-example.com", "internationalised"},
		{"label too long", "alice@" + strings.Repeat("c", 64) + ".com", "internationalised"},
		{"bad punycode", "alice@xn--zzzzzzzzz.com", "internationalised"},
		{"bidi rule", "alice@\u05d0a.com", "internationalised"},
		{"255 octets", at255, "254"},
		{"very long", strings.Repeat("a", 1<<20) + "@example.com", "254"},
		{"invalid UTF-8", "ali\xffce@example.com", "UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := ParseEmail(tc.in)
			if !errors.Is(err, ErrInvalidEmail) {
				t.Fatalf("ParseEmail = %+v, %v; want ErrInvalidEmail", e, err)
			}
			if e != (Email{}) {
				t.Fatalf("refused address returned %+v", e)
			}
			if !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("refused for %q, want a reason containing %q", err, tc.why)
			}
			t.Log(err)
		})
	}
}

// TestCanonicalTooLong shows the canonical form has its own limit: the
// punycode domain is longer than the typed one.
func TestCanonicalTooLong(t *testing.T) {
	// "bücher" is 7 octets typed and 13 in IDNA form (xn--bcher-kva).
	domain := strings.Repeat("b\u00fccher.", 10) + "example"
	local := strings.Repeat("a", 254-len("@"+domain))
	in := local + "@" + domain
	if len(in) != 254 {
		t.Fatalf("fixture is %d octets", len(in))
	}

	_, err := ParseEmail(in)
	if !errors.Is(err, ErrInvalidEmail) {
		t.Fatalf("ParseEmail = %v, want ErrInvalidEmail", err)
	}
	if !strings.Contains(err.Error(), "canonical") {
		t.Fatalf("error %q does not name the canonical length", err)
	}
}

// TestErrorsDoNotEchoInput checks that no error quotes the address.
func TestErrorsDoNotEchoInput(t *testing.T) {
	inputs := []string{
		"qz7secret <qz7secret@example.com>",
		"qz7secret@qz7secret",
		"qz7secret@xn--qz7secret.com",
		"qz7secret\u202e@example.com",
		"qz7se..cret@example.com",
	}
	for _, in := range inputs {
		_, err := ParseEmail(in)
		if err == nil {
			t.Fatalf("ParseEmail(%q) accepted", in)
		}
		if strings.Contains(err.Error(), "qz7") {
			t.Fatalf("error %q echoes the input", err)
		}
	}
}

// TestHeaderValue checks the ASCII header form: typed local part with
// non-ASCII bytes and '%' encoded, IDNA domain.
func TestHeaderValue(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Alice@Example.COM", "Alice@example.com"},
		{"a+b_c-d'e@example.com", "a+b_c-d'e@example.com"},
		{"a%b@example.com", "a%25b@example.com"},
		{"jos\u00e9@b\u00fccher.example", "jos%C3%A9@xn--bcher-kva.example"},
		{"jose\u0301@example.com", "jos%C3%A9@example.com"},
		{"\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a",
			"%E7%94%A8%E6%88%B7@xn--fsqu00a.xn--4rr70v"},
	}
	for _, tc := range tests {
		e, err := ParseEmail(tc.in)
		if err != nil {
			t.Fatalf("ParseEmail(%q): %v", tc.in, err)
		}
		got := HeaderValue(e)
		if got != tc.want {
			t.Errorf("HeaderValue(%q) = %q, want %q", tc.in, got, tc.want)
		}
		for i := 0; i < len(got); i++ {
			if got[i] <= ' ' || got[i] >= 0x7f {
				t.Errorf("HeaderValue(%q) has byte %#x", tc.in, got[i])
			}
		}
	}
}

// TestPercentEncode checks the byte encoding on its own.
func TestPercentEncode(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"%", "%25"},
		{" \t\x00\x7f", "%20%09%00%7F"},
		{"\u00ff", "%C3%BF"},
	}
	for _, tc := range tests {
		if got := percentEncode(tc.in); got != tc.want {
			t.Errorf("percentEncode(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzParseEmail checks that ParseEmail never panics, that its canonical
// form is a fixed point, and that accepted addresses keep the length and
// character rules.
func FuzzParseEmail(f *testing.F) {
	for _, s := range []string{
		"Alice@Example.COM", "jose\u0301@b\u00fccher.example", "\u212a@x.y",
		"stra\u00dfe@stra\u00dfe.de", "\u0130@xn--bcher-kva.example", "a\uff0eb@c.d",
		"\u03a3\u03c2@e.gr", "\ufb01\u0345@x.y", "a@b", "\"a\"@b.c",
	} {
		f.Add(s)
	}

	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseEmail(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidEmail) {
				t.Fatalf("error %v does not wrap ErrInvalidEmail", err)
			}
			return
		}
		if len(e.Typed) > MaxLength || len(e.Canonical) > MaxLength {
			t.Fatalf("accepted %d/%d octets", len(e.Typed), len(e.Canonical))
		}

		again, err := ParseEmail(e.Canonical)
		if err != nil {
			t.Fatalf("canonical form %q refused: %v", e.Canonical, err)
		}
		if again.Canonical != e.Canonical {
			t.Fatalf("canonical form not stable: %q then %q", e.Canonical, again.Canonical)
		}
		if again.Typed != e.Canonical {
			t.Fatalf("canonical form %q is not NFC", e.Canonical)
		}

		h := HeaderValue(e)
		for i := 0; i < len(h); i++ {
			if h[i] <= ' ' || h[i] >= 0x7f {
				t.Fatalf("HeaderValue(%q) = %q has byte %#x", s, h, h[i])
			}
		}
	})
}
