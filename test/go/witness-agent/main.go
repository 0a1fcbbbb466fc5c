// witness-agent holds one Ed25519 key in memory and serves it over the ssh-agent protocol on a Unix socket,
// which is how litewitness reads its witness key. It saves the tests from needing OpenSSH's ssh-agent and
// ssh-add: the agent is golang.org/x/crypto/ssh/agent's keyring, the same code OpenSSH-compatible Go tools use.
//
// Usage: witness-agent <socket path> <file with the 32-byte Ed25519 seed, hex>
package main

import (
	"crypto/ed25519"
	"encoding/hex"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh/agent"
)

func main() {
	if len(os.Args) != 3 {
		log.Fatal("usage: witness-agent <socket> <seed file>")
	}
	text, err := os.ReadFile(os.Args[2])
	if err != nil {
		log.Fatal(err)
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(text)))
	if err != nil || len(seed) != ed25519.SeedSize {
		log.Fatal("the seed file must hold 32 bytes in hex")
	}
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: ed25519.NewKeyFromSeed(seed)}); err != nil {
		log.Fatal(err)
	}
	listener, err := net.Listen("unix", os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		listener.Close()
		os.Exit(0)
	}()
	log.Printf("listening on %s", os.Args[1])
	for {
		conn, err := listener.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer conn.Close()
			agent.ServeAgent(keyring, conn)
		}()
	}
}
