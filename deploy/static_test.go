package deploy_test

import (
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

// The identity headers authsvc answers with, and its two cookie names.
var (
	identityHeaders = []string{"X-Auth-User-Id", "X-Auth-User-Email", "X-Auth-Session-Id"}
	cookieNames     = []string{"__Host-authsvc_session", "authsvc_session"}
	// allAuthNames also holds the request header authsvc reads.
	allAuthNames = append(slices.Clone(identityHeaders), "X-Auth-Require")
)

// readYAML decodes a file of this directory into v.
func readYAML(t *testing.T, rel string, v any) {
	t.Helper()
	data, err := os.ReadFile(repoFile(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

// traefikConfig is the part of Traefik's dynamic configuration the test
// looks at.
type traefikConfig struct {
	HTTP struct {
		Routers map[string]struct {
			EntryPoints []string `yaml:"entryPoints"`
			Rule        string   `yaml:"rule"`
			Middlewares []string `yaml:"middlewares"`
			Service     string   `yaml:"service"`
		} `yaml:"routers"`
		Middlewares map[string]struct {
			ForwardAuth *traefikForwardAuth `yaml:"forwardAuth"`
			Headers     *struct {
				CustomRequestHeaders map[string]string `yaml:"customRequestHeaders"`
			} `yaml:"headers"`
		} `yaml:"middlewares"`
		Services map[string]struct {
			LoadBalancer struct {
				Servers []struct {
					URL string `yaml:"url"`
				} `yaml:"servers"`
			} `yaml:"loadBalancer"`
		} `yaml:"services"`
	} `yaml:"http"`
}

// traefikForwardAuth is a forwardAuth middleware. TrustForwardHeader is a
// pointer so that a missing key, which means false, is told apart: the
// file should say so.
type traefikForwardAuth struct {
	Address                  string   `yaml:"address"`
	TrustForwardHeader       *bool    `yaml:"trustForwardHeader"`
	AuthRequestHeaders       []string `yaml:"authRequestHeaders"`
	AuthResponseHeaders      []string `yaml:"authResponseHeaders"`
	AuthResponseHeadersRegex string   `yaml:"authResponseHeadersRegex"`
	AddAuthCookiesToResponse []string `yaml:"addAuthCookiesToResponse"`
}

// TestTraefik checks traefik/dynamic.yml: its forwardAuth middlewares ask
// /v1/authorize with nothing but the credential, strip client X-Auth-*
// headers of any name, copy the identity and the slid cookie, and every
// route to the application but the login page goes through one of them.
func TestTraefik(t *testing.T) {
	t.Parallel()
	var cfg traefikConfig
	readYAML(t, "traefik/dynamic.yml", &cfg)
	h := cfg.HTTP

	auth := map[string]bool{}      // forwardAuth middlewares by name
	twoFactor := map[string]bool{} // those that require 2FA
	stripping := map[string]bool{} // headers middlewares clearing all four names
	for name, m := range h.Middlewares {
		if m.Headers != nil && clearsAll(m.Headers.CustomRequestHeaders) {
			stripping[name] = true
		}
		fa := m.ForwardAuth
		if fa == nil {
			continue
		}
		auth[name] = true
		u, err := url.Parse(fa.Address)
		if err != nil || u.Path != "/v1/authorize" {
			t.Errorf("%s: address %q, want .../v1/authorize", name, fa.Address)
		}
		switch u.RawQuery {
		case "":
		case "require=two_factor":
			twoFactor[name] = true
		default:
			t.Errorf("%s: address query %q", name, u.RawQuery)
		}
		if fa.TrustForwardHeader == nil || *fa.TrustForwardHeader {
			t.Errorf("%s: trustForwardHeader must be false, and said so", name)
		}
		if !slices.Contains(fa.AuthRequestHeaders, "Cookie") ||
			!slices.Contains(fa.AuthRequestHeaders, "Authorization") {
			t.Errorf("%s: authRequestHeaders %v lack the credential", name,
				fa.AuthRequestHeaders)
		}
		for _, hd := range fa.AuthRequestHeaders {
			if strings.HasPrefix(strings.ToLower(hd), "x-auth") {
				t.Errorf("%s: authRequestHeaders passes %s to authsvc", name, hd)
			}
		}
		checkStripRegex(t, name, fa.AuthResponseHeadersRegex)
		for _, hd := range identityHeaders {
			if !slices.Contains(fa.AuthResponseHeaders, hd) {
				t.Errorf("%s: authResponseHeaders lacks %s", name, hd)
			}
		}
		for _, c := range cookieNames {
			if !slices.Contains(fa.AddAuthCookiesToResponse, c) {
				t.Errorf("%s: addAuthCookiesToResponse lacks %s", name, c)
			}
		}
	}
	if len(twoFactor) == 0 {
		t.Error("no forwardAuth middleware asks with require=two_factor")
	}

	// Each router: known service and middlewares; authsvc only for /v1/;
	// the application only behind forwardAuth, but for the login page.
	toAuthsvc := 0
	for name, r := range h.Routers {
		if _, ok := h.Services[r.Service]; !ok {
			t.Errorf("router %s: unknown service %q", name, r.Service)
		}
		for _, m := range r.Middlewares {
			if _, ok := h.Middlewares[m]; !ok {
				t.Errorf("router %s: unknown middleware %q", name, m)
			}
		}
		guarded := slices.ContainsFunc(r.Middlewares, func(m string) bool { return auth[m] })
		stripped := slices.ContainsFunc(r.Middlewares, func(m string) bool { return stripping[m] })
		switch {
		case r.Service == "authsvc":
			toAuthsvc++
			if r.Rule != "PathPrefix(`/v1/`)" || !stripped {
				t.Errorf("router %s to authsvc: rule %s, middlewares %v; want only /v1/, "+
					"with identity headers cleared", name, r.Rule, r.Middlewares)
			}
		case r.Rule == "Path(`/login`)":
			if !stripped && !guarded {
				t.Errorf("router %s: the login page gets client X-Auth-* headers", name)
			}
		case !guarded:
			t.Errorf("router %s (%s) reaches %s without forwardAuth", name, r.Rule, r.Service)
		}
		if strings.Contains(r.Rule, "/admin/") &&
			!slices.ContainsFunc(r.Middlewares, func(m string) bool { return twoFactor[m] }) {
			t.Errorf("router %s: the admin area does not require two_factor", name)
		}
	}
	if toAuthsvc != 1 {
		t.Errorf("%d routers lead to authsvc, want 1 (for /v1/)", toAuthsvc)
	}
}

// clearsAll reports whether custom request headers remove every X-Auth-*
// name authsvc defines.
func clearsAll(h map[string]string) bool {
	for _, n := range allAuthNames {
		if v, ok := h[n]; !ok || v != "" {
			return false
		}
	}
	return true
}

// checkStripRegex checks a Traefik authResponseHeadersRegex (Go syntax): it
// must match client header names under the X-Auth- prefix, as Go
// canonicalises them, and nothing else.
func checkStripRegex(t *testing.T, name, expr string) {
	t.Helper()
	re, err := regexp.Compile(expr)
	if err != nil {
		t.Errorf("%s: authResponseHeadersRegex %q: %v", name, expr, err)
		return
	}
	for _, hd := range []string{"X-Auth-User-Id", "X-Auth-Require", "X-Auth-Roles",
		"X_auth_user_id"} {
		if !re.MatchString(hd) {
			t.Errorf("%s: authResponseHeadersRegex %q leaves %s in place", name, expr, hd)
		}
	}
	// Headers that must reach the application untouched.
	for _, hd := range []string{"Cookie", "Authorization", "X-Authorization",
		"X-Forwarded-For"} {
		if re.MatchString(hd) {
			t.Errorf("%s: authResponseHeadersRegex %q strips %s", name, expr, hd)
		}
	}
}

// envoyConfig is the part of the Envoy bootstrap the test looks at.
type envoyConfig struct {
	StaticResources struct {
		Listeners []struct {
			FilterChains []struct {
				Filters []struct {
					Name        string   `yaml:"name"`
					TypedConfig envoyHCM `yaml:"typed_config"`
				} `yaml:"filters"`
			} `yaml:"filter_chains"`
		} `yaml:"listeners"`
		Clusters []struct {
			Name string `yaml:"name"`
		} `yaml:"clusters"`
	} `yaml:"static_resources"`
}

// envoyHCM is the HTTP connection manager: how it treats paths and header
// names, its routes, and its HTTP filters, whose typed configurations are
// decoded by filter name.
type envoyHCM struct {
	UseRemoteAddress bool `yaml:"use_remote_address"`
	NormalizePath    bool `yaml:"normalize_path"`
	Options          struct {
		Underscores string `yaml:"headers_with_underscores_action"`
	} `yaml:"common_http_protocol_options"`
	RouteConfig struct {
		VirtualHosts []struct {
			Routes []envoyRoute `yaml:"routes"`
		} `yaml:"virtual_hosts"`
	} `yaml:"route_config"`
	HTTPFilters []struct {
		Name        string    `yaml:"name"`
		TypedConfig yaml.Node `yaml:"typed_config"`
	} `yaml:"http_filters"`
}

// envoyRoute is one route with the per-route settings the test looks at:
// ext_authz disabled, metadata for the Lua filter, and headers removed
// before the upstream.
type envoyRoute struct {
	Match struct {
		Prefix string `yaml:"prefix"`
		Path   string `yaml:"path"`
	} `yaml:"match"`
	Route struct {
		Cluster string `yaml:"cluster"`
	} `yaml:"route"`
	PerFilter map[string]struct {
		Disabled bool `yaml:"disabled"`
	} `yaml:"typed_per_filter_config"`
	Metadata struct {
		FilterMetadata map[string]map[string]string `yaml:"filter_metadata"`
	} `yaml:"metadata"`
	RemoveHeaders []string `yaml:"request_headers_to_remove"`
}

// stringMatchers is an Envoy ListStringMatcher.
type stringMatchers struct {
	Patterns []struct {
		Exact  string `yaml:"exact"`
		Prefix string `yaml:"prefix"`
	} `yaml:"patterns"`
}

// exacts returns the exact names of m, and fails on any other pattern.
func (m stringMatchers) exacts(t *testing.T, what string) []string {
	t.Helper()
	var out []string
	for _, p := range m.Patterns {
		if p.Exact == "" {
			t.Errorf("%s: a pattern other than exact: %+v", what, p)
		}
		out = append(out, p.Exact)
	}
	return out
}

// envoyExtAuthz is the ext_authz filter's configuration.
type envoyExtAuthz struct {
	FailureModeAllow bool           `yaml:"failure_mode_allow"`
	AllowedHeaders   stringMatchers `yaml:"allowed_headers"`
	HTTPService      struct {
		ServerURI struct {
			Cluster string `yaml:"cluster"`
		} `yaml:"server_uri"`
		PathPrefix string `yaml:"path_prefix"`
		Response   struct {
			Upstream  stringMatchers `yaml:"allowed_upstream_headers"`
			OnSuccess stringMatchers `yaml:"allowed_client_headers_on_success"`
		} `yaml:"authorization_response"`
	} `yaml:"http_service"`
}

// envoyLua is the Lua filter's configuration.
type envoyLua struct {
	Source struct {
		Inline string `yaml:"inline_string"`
	} `yaml:"default_source_code"`
}

// TestEnvoy checks envoy/envoy.yaml: a Lua filter drops client X-Auth-*
// headers before ext_authz asks /v1/authorize with only the credential,
// the identity and the slid cookie are copied, and only /v1/ and the login
// page skip the check.
func TestEnvoy(t *testing.T) {
	t.Parallel()
	var cfg envoyConfig
	readYAML(t, "envoy/envoy.yaml", &cfg)
	clusters := map[string]bool{}
	for _, c := range cfg.StaticResources.Clusters {
		clusters[c.Name] = true
	}

	// The one HTTP connection manager, wherever it sits.
	var hcms []envoyHCM
	for _, l := range cfg.StaticResources.Listeners {
		for _, fc := range l.FilterChains {
			for _, f := range fc.Filters {
				if f.Name == "envoy.filters.network.http_connection_manager" {
					hcms = append(hcms, f.TypedConfig)
				}
			}
		}
	}
	if len(hcms) != 1 {
		t.Fatalf("%d HTTP connection managers, want 1", len(hcms))
	}
	hcm := hcms[0]
	if !hcm.UseRemoteAddress || !hcm.NormalizePath || hcm.Options.Underscores != "REJECT_REQUEST" {
		t.Errorf("connection manager: use_remote_address %v, normalize_path %v, "+
			"underscores %q", hcm.UseRemoteAddress, hcm.NormalizePath, hcm.Options.Underscores)
	}

	// The filters, in order: strip, ask authsvc, route.
	var names []string
	for _, f := range hcm.HTTPFilters {
		names = append(names, f.Name)
		switch f.Name {
		case "envoy.filters.http.lua":
			var lua envoyLua
			if err := f.TypedConfig.Decode(&lua); err != nil {
				t.Fatalf("lua: %v", err)
			}
			code := lua.Source.Inline
			if !strings.Contains(code, `"x-auth-"`) || !strings.Contains(code, ":remove(") {
				t.Errorf("the Lua filter does not remove x-auth-* headers:\n%s", code)
			}
		case "envoy.filters.http.ext_authz":
			var ea envoyExtAuthz
			if err := f.TypedConfig.Decode(&ea); err != nil {
				t.Fatalf("ext_authz: %v", err)
			}
			checkExtAuthz(t, ea, clusters)
		}
	}
	want := []string{"envoy.filters.http.lua", "envoy.filters.http.ext_authz",
		"envoy.filters.http.router"}
	if !slices.Equal(names, want) {
		t.Errorf("http filters %v, want %v", names, want)
	}

	checkEnvoyRoutes(t, hcm, clusters)
}

// checkExtAuthz checks the ext_authz filter: it fails closed, asks
// /v1/authorize with the credential and no client identity header, sets
// the identity headers upstream and passes only Set-Cookie on success.
func checkExtAuthz(t *testing.T, ea envoyExtAuthz, clusters map[string]bool) {
	t.Helper()
	hs := ea.HTTPService
	if ea.FailureModeAllow || hs.PathPrefix != "/v1/authorize" ||
		!clusters[hs.ServerURI.Cluster] {
		t.Errorf("ext_authz: failure_mode_allow %v, path_prefix %q, cluster %q",
			ea.FailureModeAllow, hs.PathPrefix, hs.ServerURI.Cluster)
	}
	toAuthsvc := ea.AllowedHeaders.exacts(t, "allowed_headers")
	if !slices.Contains(toAuthsvc, "cookie") {
		t.Errorf("ext_authz: allowed_headers %v lack the cookie", toAuthsvc)
	}
	for _, h := range toAuthsvc {
		if strings.HasPrefix(h, "x-auth-") && h != "x-auth-require" {
			t.Errorf("ext_authz: allowed_headers passes %s to authsvc", h)
		}
	}
	up := hs.Response.Upstream.exacts(t, "allowed_upstream_headers")
	for _, h := range identityHeaders {
		if !slices.Contains(up, strings.ToLower(h)) {
			t.Errorf("ext_authz: allowed_upstream_headers lacks %s", h)
		}
	}
	onSuccess := hs.Response.OnSuccess.exacts(t, "allowed_client_headers_on_success")
	if !slices.Equal(onSuccess, []string{"set-cookie"}) {
		t.Errorf("ext_authz: allowed_client_headers_on_success %v, want [set-cookie]",
			onSuccess)
	}
}

// checkEnvoyRoutes checks that only /v1/ leads to authsvc, only /v1/ and
// /login skip ext_authz, /admin/ requires two_factor, and the catch-all
// route comes last.
func checkEnvoyRoutes(t *testing.T, hcm envoyHCM, clusters map[string]bool) {
	t.Helper()
	var routes []envoyRoute
	for _, vh := range hcm.RouteConfig.VirtualHosts {
		routes = append(routes, vh.Routes...)
	}
	if len(routes) == 0 {
		t.Fatal("no routes")
	}
	admin := false
	for _, r := range routes {
		where := r.Match.Prefix + r.Match.Path
		if !clusters[r.Route.Cluster] {
			t.Errorf("route %s: unknown cluster %q", where, r.Route.Cluster)
		}
		open := r.PerFilter["envoy.filters.http.ext_authz"].Disabled
		switch {
		case r.Route.Cluster == "authsvc":
			if r.Match.Prefix != "/v1/" || r.Match.Path != "" || !open {
				t.Errorf("route %s to authsvc: want prefix /v1/ only, without ext_authz", where)
			}
		case open && r.Match.Path != "/login":
			t.Errorf("route %s reaches %s without ext_authz", where, r.Route.Cluster)
		}
		if r.Match.Prefix == "/admin/" {
			admin = true
			if r.Metadata.FilterMetadata["envoy.filters.http.lua"]["require"] != "two_factor" ||
				!slices.Contains(r.RemoveHeaders, "x-auth-require") {
				t.Errorf("route /admin/: want require two_factor for the Lua filter, and " +
					"x-auth-require removed before the app")
			}
		}
	}
	if !admin {
		t.Error("no /admin/ route")
	}
	if last := routes[len(routes)-1]; last.Match.Prefix != "/" {
		t.Errorf("the last route matches %+v, want the catch-all prefix /", last.Match)
	}
}
