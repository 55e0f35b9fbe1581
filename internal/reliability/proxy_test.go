package reliability

import (
	"net"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// tcpProxy forwards TCP connections on loopback to one target and can play
// a network that stops delivering: while frozen, connections stay open
// but no byte crosses them, and new connections are accepted and never
// answered, as when packets to the database are silently dropped.
type tcpProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	thaw  chan struct{} // non-nil while frozen; closed by unfreeze
	conns map[net.Conn]bool
}

// newTCPProxy listens on a free port of 127.0.0.1 and forwards to target
// until the test ends.
func newTCPProxy(t testing.TB, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.unfreeze()
		p.closeAll()
	})
	return p
}

// addr is the address clients connect to.
func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

// serve connects one client to the target, unless the network is frozen,
// in which case the client waits for nothing until the network heals and
// its connection is closed.
func (p *tcpProxy) serve(client net.Conn) {
	thaw := p.track(client)
	if thaw != nil {
		<-thaw
		client.Close()
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.track(server)
	go p.pipe(server, client)
	p.pipe(client, server)
}

// track remembers c for closing, and returns the thaw channel if the
// network is frozen.
func (p *tcpProxy) track(c net.Conn) chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns[c] = true
	return p.thaw
}

// pipe copies src to dst until either fails. Bytes read while the network
// is frozen are held back, and the connection dies when it heals.
func (p *tcpProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			thaw := p.thaw
			p.mu.Unlock()
			if thaw != nil {
				<-thaw
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// freeze stops every byte from crossing, on open and new connections.
func (p *tcpProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.thaw == nil {
		p.thaw = make(chan struct{})
	}
}

// unfreeze heals the network: the connections that lived through the
// freeze are closed, as their peers gave up on them long ago, and new
// connections are forwarded again.
func (p *tcpProxy) unfreeze() {
	p.mu.Lock()
	thaw, old := p.thaw, p.conns
	if thaw != nil {
		p.thaw, p.conns = nil, map[net.Conn]bool{}
	}
	p.mu.Unlock()
	if thaw == nil {
		return
	}
	close(thaw)
	for c := range old {
		c.Close()
	}
}

// closeAll closes every connection made so far.
func (p *tcpProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

// roundRobin starts an HTTP reverse proxy on loopback that sends each
// request to the next of backends in turn, like a load balancer in front
// of replicas, and returns its base URL.
func roundRobin(t testing.TB, backends []string) string {
	t.Helper()
	targets := make([]*url.URL, len(backends))
	for i, b := range backends {
		u, err := url.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		targets[i] = u
	}
	var n atomic.Uint64
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(targets[int(n.Add(1)%uint64(len(targets)))])
	}}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv.URL
}
