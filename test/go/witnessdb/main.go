// witnessdb adds logs and their keys to a litewitness database and lists them: the three witnessctl commands
// the tests use (add-log, add-key, list-logs), with the same SQL on litewitness's own schema. torchwood's
// witnessctl also handles Sigsum logs, and its sigsum.org dependency is not served by the module proxy this
// project builds from, so the tests build this instead.
//
// Usage: witnessdb add-log -db <path> -origin <origin>
//
//	witnessdb add-key -db <path> -origin <origin> -key <verifier key>
//	witnessdb list-logs -db <path>
package main

import (
	"crypto/sha256"
	"encoding/base64"
	"flag"
	"fmt"
	"log"
	"os"

	"golang.org/x/mod/sumdb/note"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// schema is litewitness's (filippo.io/torchwood v0.6.1 internal/witness OpenDB, pragmas included: a key for a
// log not added is refused, as witnessctl refuses it), so either program may create it.
const schema = `
	PRAGMA strict_types = ON;
	PRAGMA foreign_keys = ON;
	CREATE TABLE IF NOT EXISTS log (
		origin TEXT PRIMARY KEY,
		tree_size INTEGER NOT NULL,
		tree_hash TEXT NOT NULL -- base64-encoded
	);
	CREATE TABLE IF NOT EXISTS key (
		origin TEXT NOT NULL,
		key TEXT NOT NULL, -- note verifier key
		FOREIGN KEY(origin) REFERENCES log(origin)
	);`

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: witnessdb add-log|add-key|list-logs -db <path> [-origin <origin>] [-key <verifier key>]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	dbPath := fs.String("db", "litewitness.db", "path to the litewitness database")
	origin := fs.String("origin", "", "log origin")
	key := fs.String("key", "", "note verifier key")
	if err := fs.Parse(os.Args[2:]); err != nil {
		log.Fatal(err)
	}
	db, err := sqlite.OpenConn(*dbPath)
	if err != nil {
		log.Fatalf("opening %s: %v", *dbPath, err)
	}
	defer db.Close()
	if err := sqlitex.ExecuteScript(db, schema, nil); err != nil {
		log.Fatalf("creating the schema: %v", err)
	}
	switch os.Args[1] {
	case "add-log":
		// A new log starts at size 0, whose root is the hash of the empty string (RFC 9162 §2.1.1).
		empty := sha256.Sum256(nil)
		exec(db, "INSERT INTO log (origin, tree_size, tree_hash) VALUES (?, 0, ?)", nil, *origin,
			base64.StdEncoding.EncodeToString(empty[:]))
	case "add-key":
		if _, err := note.NewVerifier(*key); err != nil {
			log.Fatalf("parsing the verifier key: %v", err)
		}
		exec(db, "INSERT INTO key (origin, key) VALUES (?, ?)", nil, *origin, *key)
	case "list-logs":
		exec(db, `SELECT json_object('origin', log.origin, 'size', log.tree_size, 'root_hash', log.tree_hash,
			'keys', json_group_array(key.key))
			FROM log LEFT JOIN key ON log.origin = key.origin GROUP BY log.origin ORDER BY log.origin`,
			func(stmt *sqlite.Stmt) error {
				_, err := fmt.Println(stmt.ColumnText(0))
				return err
			})
	default:
		log.Fatalf("unknown command %q", os.Args[1])
	}
}

func exec(db *sqlite.Conn, query string, result func(*sqlite.Stmt) error, args ...any) {
	if err := sqlitex.Execute(db, query, &sqlitex.ExecOptions{ResultFunc: result, Args: args}); err != nil {
		log.Fatal(err)
	}
}
