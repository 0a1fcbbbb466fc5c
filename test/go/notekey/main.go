// notekey prints a new Ed25519 signed-note key pair made by golang.org/x/mod/sumdb/note.GenerateKey, as two
// lines: the signer key (PRIVATE+KEY+<name>+<id>+<key>) and the verifier key (<name>+<id>+<key>).
package main

import (
	"crypto/rand"
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/note"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: notekey <key name>")
		os.Exit(2)
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(skey)
	fmt.Println(vkey)
}
