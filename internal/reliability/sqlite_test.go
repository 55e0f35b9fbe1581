package reliability

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeHeavyMix is mostly journeys that write: signups, logins, second
// factors, enrolments and logouts.
var writeHeavyMix = []weight{
	{actSignup, 20}, {actLogin, 20}, {actCheck, 10}, {actLogout, 10},
	{actVerify, 15}, {actRecovery, 10}, {actEnrol, 15},
}

// lockedWords are what SQLite says when a writer finds the database
// locked; none may reach a client or the log.
var lockedWords = []string{"database is locked", "database table is locked",
	"SQLITE_BUSY", "SQLITE_LOCKED"}

// Many clients writing at once through one authsvc on the embedded store
// all get their normal answers: no 500, no 503, and no "database is
// locked" in any answer or in the log. The file then holds exactly what
// the clients were told.
func TestSQLiteConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "data", "authsvc.db")
	p := startAuthsvc(t, dir, append(baseEnv(), "AUTHSVC_DATABASE_URL=sqlite:"+path))
	w := newWorkload([]string{p.base}, writeHeavyMix)
	seed(t, w, 16, 16)

	w.runN(24, 30)

	events := w.eventsSince(time.Time{})
	if len(events) > 0 {
		t.Errorf("%d requests did not get their normal answer:\n%s",
			len(events), describe(events))
	}
	logs := p.logs.String()
	for _, word := range lockedWords {
		for _, e := range events {
			if strings.Contains(e.detail, word) {
				t.Errorf("an answer says %q: %s", word, e)
			}
		}
		if strings.Contains(logs, word) {
			t.Errorf("the log says %q:\n%s", word, tail(logs))
		}
	}
	if s := errorLines(p); s != "" {
		t.Errorf("errors in the log:\n%s", s)
	}
	w.verifyLedger(t, sqliteDialect, openDB(t, sqliteDialect, path), p.base)
	t.Log(w.summary())
}
