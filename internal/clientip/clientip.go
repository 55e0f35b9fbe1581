// Package clientip decides which address a request comes from. The peer
// address of the connection is the client unless the peer is a trusted
// proxy; then X-Forwarded-For is read from the right, skipping trusted
// proxies, and the first address that is not one is the client. Addresses
// further left were written by the client itself and are never believed.
package clientip

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Resolver finds client addresses for one set of trusted proxy ranges.
type Resolver struct {
	trusted []netip.Prefix
}

// ParsePrefixes parses a comma-separated list of CIDR ranges; a bare
// address counts as a single-address range.
func ParsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q is neither a CIDR range nor an address", f)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR range", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// New returns a Resolver that believes X-Forwarded-For from peers in trusted.
func New(trusted []netip.Prefix) *Resolver {
	return &Resolver{trusted: trusted}
}

func (r *Resolver) isTrusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Resolve returns the client address of req, and reports whether req
// carried X-Forwarded-For from a peer that is not trusted (a header that
// was ignored).
func (r *Resolver) Resolve(req *http.Request) (client netip.Addr, ignored bool) {
	peer := peerAddr(req.RemoteAddr)
	xff := req.Header.Values("X-Forwarded-For")
	if len(xff) == 0 {
		return peer, false
	}
	if !peer.IsValid() || !r.isTrusted(peer) {
		return peer, true
	}
	client = peer
	hops := strings.Split(strings.Join(xff, ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(hops[i])
		if !ok {
			// Something we cannot read: stop believing the chain and keep
			// the last address we could vouch for.
			return client, false
		}
		client = a
		if !r.isTrusted(a) {
			return client, false
		}
	}
	return client, false
}

// peerAddr parses the host of a RemoteAddr; an invalid Addr if it cannot.
func peerAddr(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// parseHop reads one X-Forwarded-For element: an address, optionally with a
// port, IPv6 optionally in brackets.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap().WithZone(""), true
		}
	}
	return netip.Addr{}, false
}

// Key returns the key per-client limits count under: the address itself for
// IPv4 and the /64 network for IPv6, since one IPv6 host usually owns a
// whole /64.
func Key(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}
