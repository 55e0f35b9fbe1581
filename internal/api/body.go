package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"unicode/utf8"
)

// maxBody is the largest request body read.
const maxBody = 64 << 10

// readBody reads a JSON request body: 413 when it is over maxBody, 415 when
// it is not declared as application/json. A request without a body gives
// nil and needs no content type.
func readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength > maxBody {
		return nil, errPayloadTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, invalidRequest("The request body could not be read.")
	}
	if len(body) > maxBody {
		return nil, errPayloadTooLarge
	}
	if len(body) == 0 {
		return nil, nil
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, errUnsupportedMedia
	}
	if cs, ok := params["charset"]; ok && !equalFoldASCII(cs, "utf-8") {
		return nil, errUnsupportedMedia
	}
	return body, nil
}

func equalFoldASCII(a, b string) bool {
	return len(a) == len(b) && bytes.EqualFold([]byte(a), []byte(b))
}

// field names one string member of a request object.
type field struct {
	name     string
	dst      *string
	required bool
}

// decodeObject parses body as one JSON object and fills the named string
// fields. It refuses invalid UTF-8, duplicate keys at any depth, trailing
// data, a member of the wrong type and a missing required member. Unknown
// members are ignored so that clients may send more than a version knows.
func decodeObject(body []byte, fields ...field) error {
	if len(body) == 0 {
		return invalidRequest("A JSON object is required as the request body.")
	}
	if !utf8.Valid(body) {
		return invalidRequest("The request body is not valid UTF-8.")
	}
	if err := checkDuplicates(body); err != nil {
		return err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return invalidRequest("The request body must be a JSON object.")
	}
	for _, f := range fields {
		raw, ok := obj[f.name]
		if !ok {
			if f.required {
				return invalidRequest("The field \"" + f.name + "\" is required.")
			}
			continue
		}
		if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, f.dst) != nil {
			return invalidRequest("The field \"" + f.name + "\" must be a string.")
		}
	}
	return nil
}

// maxDepth is how deeply request bodies may nest. The contract's bodies
// are flat; the limit keeps a 64 KiB body of brackets from costing
// megabytes to walk.
const maxDepth = 16

// checkDuplicates walks the JSON tokens of body and refuses an object that
// names a key twice, nesting deeper than maxDepth, and anything after the
// first value.
func checkDuplicates(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	malformed := invalidRequest("The request body is not valid JSON.")
	type frame struct {
		object bool
		keys   map[string]bool
		key    bool // the next string token in an object is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return malformed
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				if len(stack) >= maxDepth {
					return invalidRequest("The request body nests too deeply.")
				}
				if top != nil && top.object {
					top.key = true
				}
				stack = append(stack, &frame{object: true, keys: map[string]bool{}, key: true})
			case '[':
				if len(stack) >= maxDepth {
					return invalidRequest("The request body nests too deeply.")
				}
				if top != nil && top.object {
					top.key = true
				}
				stack = append(stack, &frame{})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if top != nil && top.object && top.key {
				if top.keys[t] {
					return invalidRequest("The request body names a field twice.")
				}
				top.keys[t] = true
				top.key = false
				continue
			}
		}
		if top != nil && top.object {
			top.key = true
		}
	}
	if dec.More() {
		return malformed
	}
	return nil
}
