package password

import (
	_ "embed"
	"errors"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Length limits in Unicode code points, counted after NFC normalisation.
const (
	MinLength = 8
	MaxLength = 256
)

// ErrWeak is matched by every error that Normalize and Check return, so the
// caller can answer 422 weak_password for all of them.
var ErrWeak = errors.New("weak password")

// WeakError is a refused password together with a short reason that is safe
// to show to the user: it never contains the password.
type WeakError struct {
	Reason string
}

// Error returns the reason prefixed with "weak password".
func (e *WeakError) Error() string {
	return "weak password: " + e.Reason
}

// Is reports whether target is ErrWeak, so errors.Is(err, ErrWeak) holds for
// every WeakError.
func (e *WeakError) Is(target error) bool {
	return target == ErrWeak
}

// The reasons a password is refused. Each one matches ErrWeak too.
var (
	ErrInvalidUTF8 = &WeakError{Reason: "password is not valid UTF-8"}
	ErrTooShort    = &WeakError{Reason: "password must be at least 8 characters"}
	ErrTooLong     = &WeakError{Reason: "password must be at most 256 characters"}
	ErrCommon      = &WeakError{Reason: "password is too common"}
	ErrIsEmail     = &WeakError{Reason: "password must not be the email address"}
)

// commonList is the embedded list of common passwords. Its source, version
// and licence are in its header lines and in the README beside it: the
// "passwords" frequency list of the npm package zxcvbn 4.4.2 (MIT licence,
// Copyright (c) 2012-2016 Dan Wheeler and Dropbox, Inc.), keeping entries of
// 8 or more code points, lower-cased.
//
//go:embed common.txt
var commonList string

// common is the set built from commonList. It is filled once at start-up and
// only read afterwards.
var common = parseList(commonList)

// parseList turns the list file into a set of fold keys, skipping blank
// lines and lines starting with '#'.
func parseList(text string) map[string]struct{} {
	set := make(map[string]struct{}, strings.Count(text, "\n"))
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		set[foldKey(line)] = struct{}{}
	}
	return set
}

// foldKey maps s to the form in which two passwords count as the same for
// the common-list and email rules: NFKC, then Unicode case folding. So
// "PassWord1", "password1" and its full-width spelling meet.
func foldKey(s string) string {
	return norm.NFKC.String(cases.Fold().String(norm.NFKC.String(s)))
}

// Normalize returns the NFC form of pw, which is what gets hashed. It
// refuses invalid UTF-8 (ErrInvalidUTF8) and a length outside MinLength to
// MaxLength code points after NFC (ErrTooShort, ErrTooLong). It never
// truncates. Every error it returns matches ErrWeak.
func Normalize(pw string) (string, error) {
	if !utf8.ValidString(pw) {
		return "", ErrInvalidUTF8
	}
	nfc := norm.NFC.String(pw)
	if err := checkLength(nfc); err != nil {
		return "", err
	}
	return nfc, nil
}

// Check applies the rest of the policy to a password that Normalize
// returned: it must not be on the shipped list of common passwords
// (ErrCommon) nor be the email address itself (ErrIsEmail); both compare
// ignoring case and compatibility forms. email is the address as typed. The
// local part alone is allowed, since the rule names the whole address.
// Check repeats the length and UTF-8 checks, so it is safe on its own. Every
// error it returns matches ErrWeak.
func Check(normalizedPassword, email string) error {
	if !utf8.ValidString(normalizedPassword) {
		return ErrInvalidUTF8
	}
	if err := checkLength(normalizedPassword); err != nil {
		return err
	}

	key := foldKey(normalizedPassword)
	if _, ok := common[key]; ok {
		return ErrCommon
	}
	if e := strings.TrimSpace(email); e != "" && key == foldKey(e) {
		return ErrIsEmail
	}
	return nil
}

// checkLength enforces MinLength and MaxLength on s in code points.
func checkLength(s string) error {
	switch n := utf8.RuneCountInString(s); {
	case n < MinLength:
		return ErrTooShort
	case n > MaxLength:
		return ErrTooLong
	}
	return nil
}
