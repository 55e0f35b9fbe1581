// Package openapi carries the OpenAPI description of authsvc's HTTP API,
// which the service serves at /openapi.yaml and the tests check the
// router against.
package openapi

import _ "embed"

// Document is the OpenAPI 3 description, in YAML.
//
//go:embed openapi.yaml
var Document []byte
