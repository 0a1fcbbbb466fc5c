// Command ckpt checks auditsink's checkpoints and c2sp.org/tlog-proof receipts with the Go transparency-log
// packages nobody at auditsink wrote: golang.org/x/mod/sumdb/note (signed notes, verifier keys), x/mod/sumdb/tlog
// (RFC 6962 inclusion) and filippo.io/torchwood (c2sp.org/tlog-checkpoint parsing). Run by
// test/embedded/go-ckpt.test.ts.
//
// Input on stdin, JSON: {"checkpoints": [{"signed", "vkey"}], "proofs": [{"proof", "vkey", "recordHash"}]}.
// Output on stdout, JSON: one result per input, in order: {"ok", "error", "origin", "size", "extra"}.
//
// As Go's tooling does, the verifier key's name must be the signature's key name, and (for a proof) the origin:
// key name = origin. x/mod's note verifies Ed25519 (type 0x01) itself; for ECDSA P-256 (type 0x02, signed-note)
// this program supplies a note.Verifier built on crypto/ecdsa.
package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type input struct {
	Checkpoints []struct {
		Signed string `json:"signed"`
		Vkey   string `json:"vkey"`
	} `json:"checkpoints"`
	Proofs []struct {
		Proof      string `json:"proof"`
		Vkey       string `json:"vkey"`
		RecordHash string `json:"recordHash"`
	} `json:"proofs"`
}

type result struct {
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	Origin string `json:"origin,omitempty"`
	Size   int64  `json:"size"`
	Extra  string `json:"extra,omitempty"`
}

type ecdsaVerifier struct {
	name string
	hash uint32
	key  *ecdsa.PublicKey
}

func (v *ecdsaVerifier) Name() string    { return v.name }
func (v *ecdsaVerifier) KeyHash() uint32 { return v.hash }
func (v *ecdsaVerifier) Verify(msg, sig []byte) bool {
	digest := sha256.Sum256(msg)
	return ecdsa.VerifyASN1(v.key, digest[:], sig)
}

// verifier parses a verifier key string `<name>+<hex key hash>+<base64(type || key)>`.
func verifier(vkey string) (note.Verifier, error) {
	name, rest, ok1 := strings.Cut(vkey, "+")
	hashHex, b64, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 {
		return nil, errors.New("malformed verifier key")
	}
	material, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(material) < 2 {
		return nil, errors.New("malformed verifier key")
	}
	if material[0] != 0x02 {
		return note.NewVerifier(vkey)
	}
	pub, err := x509.ParsePKIXPublicKey(material[1:])
	if err != nil {
		return nil, err
	}
	key, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("type 0x02 key is not ECDSA")
	}
	sum := sha256.Sum256(material[1:])
	hash, err := strconv.ParseUint(hashHex, 16, 32)
	if err != nil || uint32(hash) != binary.BigEndian.Uint32(sum[:4]) {
		return nil, errors.New("verifier key hash does not match its key")
	}
	return &ecdsaVerifier{name: name, hash: uint32(hash), key: key}, nil
}

// openCheckpoint verifies a signed checkpoint with one verifier key and parses its body.
func openCheckpoint(signed, vkey string) (torchwood.Checkpoint, error) {
	v, err := verifier(vkey)
	if err != nil {
		return torchwood.Checkpoint{}, err
	}
	n, err := note.Open([]byte(signed), note.VerifierList(v))
	if err != nil {
		return torchwood.Checkpoint{}, err
	}
	c, err := torchwood.ParseCheckpoint(n.Text)
	if err != nil {
		return torchwood.Checkpoint{}, err
	}
	if c.Origin != v.Name() {
		return torchwood.Checkpoint{}, fmt.Errorf("checkpoint origin %q is not the key name %q", c.Origin, v.Name())
	}
	return c, nil
}

// checkProof parses a c2sp.org/tlog-proof and checks the inclusion of the leaf RecordHash(recordHash).
func checkProof(proof, vkey, recordHashHex string) result {
	fail := func(format string, a ...any) result { return result{Error: fmt.Sprintf(format, a...)} }
	s, ok := strings.CutPrefix(proof, "c2sp.org/tlog-proof@v1\n")
	if !ok {
		return fail("not a c2sp.org/tlog-proof@v1")
	}
	var extra []byte
	if rest, ok := strings.CutPrefix(s, "extra "); ok {
		line, after, _ := strings.Cut(rest, "\n")
		var err error
		if extra, err = base64.StdEncoding.DecodeString(line); err != nil {
			return fail("extra: %v", err)
		}
		s = after
	}
	rest, ok := strings.CutPrefix(s, "index ")
	if !ok {
		return fail("no index line")
	}
	line, s, _ := strings.Cut(rest, "\n")
	index, err := strconv.ParseInt(line, 10, 64)
	if err != nil || line != strconv.FormatInt(index, 10) {
		return fail("malformed index %q", line)
	}
	var path tlog.RecordProof
	for {
		line, s, ok = strings.Cut(s, "\n")
		if !ok {
			return fail("no checkpoint after the proof")
		}
		if line == "" {
			break
		}
		h, err := tlog.ParseHash(line)
		if err != nil {
			return fail("proof hash: %v", err)
		}
		path = append(path, h)
	}
	c, err := openCheckpoint(s, vkey)
	if err != nil {
		return fail("checkpoint: %v", err)
	}
	entry, err := hex.DecodeString(recordHashHex)
	if err != nil {
		return fail("record hash: %v", err)
	}
	// auditsink's tlog entry is the 32-byte record hash; the leaf is RecordHash(entry) = SHA-256(0x00 || entry).
	if err := tlog.CheckRecord(path, c.N, c.Hash, index, tlog.RecordHash(entry)); err != nil {
		return fail("inclusion: %v", err)
	}
	return result{OK: true, Origin: c.Origin, Size: c.N, Extra: string(extra)}
}

func main() {
	var in input
	if err := json.NewDecoder(bufio.NewReader(os.Stdin)).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	out := struct {
		Checkpoints []result `json:"checkpoints"`
		Proofs      []result `json:"proofs"`
	}{[]result{}, []result{}}
	for _, c := range in.Checkpoints {
		cp, err := openCheckpoint(c.Signed, c.Vkey)
		if err != nil {
			out.Checkpoints = append(out.Checkpoints, result{Error: err.Error()})
		} else {
			out.Checkpoints = append(out.Checkpoints, result{OK: true, Origin: cp.Origin, Size: cp.N})
		}
	}
	for _, p := range in.Proofs {
		out.Proofs = append(out.Proofs, checkProof(p.Proof, p.Vkey, p.RecordHash))
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}
