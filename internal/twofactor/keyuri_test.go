package twofactor

import (
	"bytes"
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestNewSecret checks the length of secrets and that two differ.
func TestNewSecret(t *testing.T) {
	a, err := NewSecret()
	if err != nil {
		t.Fatalf("NewSecret: %v", err)
	}
	b, err := NewSecret()
	if err != nil {
		t.Fatalf("NewSecret: %v", err)
	}
	if len(a) != SecretSize || len(b) != SecretSize {
		t.Fatalf("secret lengths %d and %d, want %d", len(a), len(b), SecretSize)
	}
	if bytes.Equal(a, b) {
		t.Errorf("two secrets are equal: %x", a)
	}
}

// TestEncodeSecret checks the unpadded upper-case base32 form, including
// lengths that padded base32 would pad.
func TestEncodeSecret(t *testing.T) {
	tests := []struct {
		secret []byte
		want   string
	}{
		// The secret of RFC 6238 Appendix B.
		{[]byte("12345678901234567890"), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"},
		{make([]byte, SecretSize), strings.Repeat("A", 32)},
		{bytes.Repeat([]byte{0xff}, SecretSize), strings.Repeat("7", 32)},
		// Lengths that would need padding in padded base32.
		{[]byte("f"), "MY"},
		{[]byte("foobar"), "MZXW6YTBOI"},
	}
	for _, tt := range tests {
		if got := EncodeSecret(tt.secret); got != tt.want {
			t.Errorf("EncodeSecret(%x) = %q, want %q", tt.secret, got, tt.want)
		}
	}
}

// TestCheckIssuer accepts ordinary and non-ASCII names and refuses what
// would break the label or mislead users in their app.
func TestCheckIssuer(t *testing.T) {
	tests := []struct {
		issuer string
		valid  bool
	}{
		{"authsvc", true},
		{"Example Co", true},
		{"Ünïcödé Straße 中文", true},
		{"A&B = C+D #1 ?/%", true},
		{strings.Repeat("é", MaxIssuerLength), true},
		{"", false},
		{"Example:Co", false},
		{":", false},
		{strings.Repeat("é", MaxIssuerLength+1), false},
		{"tab\there", false},
		{"new\nline", false},
		{"nul\x00", false},
		{"del\x7f", false},
		{"c1 \u0085 control", false},
		{"bidi \u202e override", false},
		{"isolate \u2066 x", false},
		{" leading", false},
		{"trailing ", false},
		{"bad \xff utf8", false},
	}
	for _, tt := range tests {
		err := CheckIssuer(tt.issuer)
		if tt.valid && err != nil {
			t.Errorf("CheckIssuer(%q) = %v, want nil", tt.issuer, err)
		}
		if !tt.valid {
			if !errors.Is(err, ErrInvalidIssuer) {
				t.Errorf("CheckIssuer(%q) = %v, want ErrInvalidIssuer", tt.issuer, err)
			} else if len(tt.issuer) > 3 && strings.Contains(err.Error(), tt.issuer) {
				t.Errorf("CheckIssuer(%q) message %q echoes the value", tt.issuer, err)
			}
		}
	}
}

// TestKeyURIExact pins the whole URI, parameter order included, for a few
// simple inputs.
func TestKeyURIExact(t *testing.T) {
	const secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	const tail = "&algorithm=SHA1&digits=6&period=30"
	tests := []struct {
		issuer, account string
		want            string
	}{
		{
			"authsvc", "alice@example.com",
			"otpauth://totp/authsvc:alice%40example.com?secret=" + secret +
				"&issuer=authsvc" + tail,
		},
		{
			"Example Co", "bob+tag@example.org",
			"otpauth://totp/Example%20Co:bob%2Btag%40example.org?secret=" + secret +
				"&issuer=Example%20Co" + tail,
		},
		{
			"Café", "a-b_c.d~e",
			"otpauth://totp/Caf%C3%A9:a-b_c.d~e?secret=" + secret +
				"&issuer=Caf%C3%A9" + tail,
		},
	}
	for _, tt := range tests {
		if got := KeyURI(tt.issuer, tt.account, secret); got != tt.want {
			t.Errorf("KeyURI(%q, %q) =\n  %s\nwant\n  %s", tt.issuer, tt.account, got, tt.want)
		}
	}
}

// uriCases are issuers and accounts that break naive URI building.
var uriCases = []struct{ issuer, account string }{
	{"authsvc", "alice@example.com"},
	{"Example Co", "first last@example.com"},
	{"A&B", "x&y=z@example.com"},
	{"Plus+Minus", "user+tag@example.com"},
	{"Eq=Sign", "a=b"},
	{"Hash #1", "#fragment"},
	{"Why?", "what?@example.com"},
	{"100% Sure", "%41%zz%"},
	{"Slash/Co", "a/b/../c"},
	{"Église", "élodie@exemple.fr"},
	{"Über GmbH", "jürgen@müller.de"},
	{"Straße", "weiß@straße.de"},
	{"中文公司", "用户@例子.中国"},
	{"Mixed é+ü&ß #?", "δοκιμή+tag@παράδειγμα.δοκιμή"},
	{"Tilde~Dash-Dot.Under_", "~-._"},
	{"authsvc", "colon:in:account"},
	{"authsvc", "quote\"apostrophe'backslash\\"},
	{"authsvc", "semi;comma,bracket[]{}<>|^`"},
	{"authsvc", "  spaces  around  "},
	{"authsvc", ""},
}

// checkKeyURI parses uri with net/url and checks that it gives back issuer,
// account and secret exactly.
func checkKeyURI(t *testing.T, uri, issuer, account, secret string) {
	t.Helper()
	if strings.ContainsAny(uri, " +") {
		t.Errorf("URI %q contains a space or a plus sign", uri)
	}

	u, err := url.Parse(uri)
	if err != nil {
		t.Fatalf("url.Parse(%q): %v", uri, err)
	}
	if u.Scheme != "otpauth" || u.Host != "totp" {
		t.Errorf("scheme %q host %q, want otpauth and totp", u.Scheme, u.Host)
	}
	if want := "/" + issuer + ":" + account; u.Path != want {
		t.Errorf("label %q, want %q", u.Path, want)
	}
	if CheckIssuer(issuer) == nil {
		gotIssuer, gotAccount, ok := strings.Cut(strings.TrimPrefix(u.Path, "/"), ":")
		if !ok || gotIssuer != issuer || gotAccount != account {
			t.Errorf("label splits into %q and %q, want %q and %q",
				gotIssuer, gotAccount, issuer, account)
		}
	}

	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		t.Fatalf("query of %q: %v", uri, err)
	}
	want := url.Values{
		"secret":    {secret},
		"issuer":    {issuer},
		"algorithm": {"SHA1"},
		"digits":    {"6"},
		"period":    {"30"},
	}
	if len(q) != len(want) {
		t.Errorf("query has %d parameters, want %d: %q", len(q), len(want), u.RawQuery)
	}
	for k, v := range want {
		if got := q[k]; len(got) != 1 || got[0] != v[0] {
			t.Errorf("query %s = %q, want %q", k, got, v)
		}
	}
}

// TestKeyURIRoundTrip parses the URI of every tricky case back and checks
// that it is plain ASCII.
func TestKeyURIRoundTrip(t *testing.T) {
	secret := EncodeSecret([]byte("12345678901234567890"))
	for _, c := range uriCases {
		t.Run(c.issuer+"|"+c.account, func(t *testing.T) {
			uri := KeyURI(c.issuer, c.account, secret)
			checkKeyURI(t, uri, c.issuer, c.account, secret)
			if !strings.HasPrefix(uri, "otpauth://totp/") {
				t.Errorf("URI %q has the wrong prefix", uri)
			}
			for _, r := range uri {
				if r >= utf8.RuneSelf {
					t.Fatalf("URI %q has a non-ASCII character", uri)
				}
			}
		})
	}
}

// FuzzKeyURI checks that any issuer, account and secret, valid UTF-8 or
// not, come back unchanged from a standard parser.
func FuzzKeyURI(f *testing.F) {
	for _, c := range uriCases {
		f.Add(c.issuer, c.account, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
	}
	f.Add("a:b", "c:d", "")
	f.Add("\x00\xff", "\r\n", "%")

	f.Fuzz(func(t *testing.T, issuer, account, secret string) {
		checkKeyURI(t, KeyURI(issuer, account, secret), issuer, account, secret)
	})
}

// BenchmarkKeyURI measures building a URI with characters to escape.
func BenchmarkKeyURI(b *testing.B) {
	secret := EncodeSecret([]byte("12345678901234567890"))
	b.ReportAllocs()
	for b.Loop() {
		_ = KeyURI("Example Co", "jürgen+2fa@example.com", secret)
	}
}
