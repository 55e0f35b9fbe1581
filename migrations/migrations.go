// Package migrations holds the schema of authsvc's database as numbered SQL
// files, one set for PostgreSQL and one for SQLite, embedded into the binary.
//
// The files follow golang-migrate's naming: NNNN_name.up.sql applies a step
// and NNNN_name.down.sql undoes it. Both sets have the same steps with the
// same numbers, so a version means the same schema on either database.
// Package db applies them; nothing here runs SQL.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed postgres/*.sql
var postgresFiles embed.FS

//go:embed sqlite/*.sql
var sqliteFiles embed.FS

// Postgres is the migration set for PostgreSQL, with the SQL files at its
// root.
var Postgres fs.FS = mustSub(postgresFiles, "postgres")

// SQLite is the migration set for the embedded SQLite store, with the SQL
// files at its root.
var SQLite fs.FS = mustSub(sqliteFiles, "sqlite")

// mustSub returns the directory dir of files. The directories are fixed at
// compile time by the embed patterns above, so a failure is a build mistake.
func mustSub(files embed.FS, dir string) fs.FS {
	sub, err := fs.Sub(files, dir)
	if err != nil {
		panic("migrations: " + err.Error())
	}
	return sub
}
