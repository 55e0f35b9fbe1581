package db

// Internals that the tests of package db_test reach for.
var (
	MigrationLockKey = pgMigrationLockKey
	SQLiteLockPath   = sqliteLockPath
)
