package clientip

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestResolve(t *testing.T) {
	trusted, err := ParsePrefixes("10.0.0.0/8, 192.168.1.1, fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	r := New(trusted)
	tests := []struct {
		name    string
		peer    string
		xff     []string
		want    string
		ignored bool
	}{
		{"no header", "203.0.113.5:4000", nil, "203.0.113.5", false},
		{"spoofed from untrusted peer", "203.0.113.5:4000", []string{"1.2.3.4"},
			"203.0.113.5", true},
		{"one trusted hop", "10.1.2.3:80", []string{"198.51.100.7"}, "198.51.100.7", false},
		{"client-written prefix ignored", "10.1.2.3:80",
			[]string{"6.6.6.6, 198.51.100.7"}, "198.51.100.7", false},
		{"chain of trusted proxies", "10.1.2.3:80",
			[]string{"6.6.6.6, 198.51.100.7, 192.168.1.1", "10.9.9.9"}, "198.51.100.7", false},
		{"all trusted: leftmost", "10.1.2.3:80", []string{"10.0.0.9"}, "10.0.0.9", false},
		{"garbage hop stops the walk", "10.1.2.3:80",
			[]string{"198.51.100.7, nonsense"}, "10.1.2.3", false},
		{"ipv6 with port and brackets", "[fd00::1]:443",
			[]string{"[2001:db8::5]:1234"}, "2001:db8::5", false},
		{"mapped v4 peer", "[::ffff:10.0.0.1]:80", []string{"198.51.100.9"},
			"198.51.100.9", false},
		{"unparseable peer", "pipe", []string{"1.2.3.4"}, "invalid IP", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/", nil)
			req.RemoteAddr = tt.peer
			for _, v := range tt.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			got, ignored := r.Resolve(req)
			if got.String() != tt.want || ignored != tt.ignored {
				t.Fatalf("Resolve = %v, %v; want %v, %v", got, ignored, tt.want, tt.ignored)
			}
		})
	}
}

func TestParsePrefixesRefuses(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "nope", "10.0.0.0/8,,x"} {
		if _, err := ParsePrefixes(bad); err == nil {
			t.Errorf("ParsePrefixes(%q) accepted", bad)
		}
	}
}

func TestKey(t *testing.T) {
	a := Key(netip.MustParseAddr("2001:db8:1:2:aaaa::1"))
	b := Key(netip.MustParseAddr("2001:db8:1:2:bbbb::9"))
	c := Key(netip.MustParseAddr("2001:db8:1:3::1"))
	if a != b || a == c {
		t.Fatalf("IPv6 keys: %s %s %s", a, b, c)
	}
	if Key(netip.MustParseAddr("192.0.2.1")) != "192.0.2.1" {
		t.Fatal("IPv4 key is not the address")
	}
}

func FuzzResolve(f *testing.F) {
	f.Add("10.1.2.3:80", "1.2.3.4, [::1]:80, 10.0.0.1")
	f.Add("[fd00::1]:1", "garbage,,")
	r := New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("fd00::/8")})
	f.Fuzz(func(t *testing.T, peer, xff string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = peer
		req.Header.Set("X-Forwarded-For", xff)
		got, _ := r.Resolve(req)
		if got.IsValid() && got.Zone() != "" {
			t.Fatalf("zone kept in %v", got)
		}
	})
}
