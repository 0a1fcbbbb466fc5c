// reader checks a c2sp.org/tlog-tiles log over HTTP with the Go transparency-log packages, none of it written
// for auditsink: golang.org/x/mod/sumdb/note verifies the checkpoint, golang.org/x/mod/sumdb/tlog reads the hash
// tiles (TileHashReader, which authenticates every tile against the checkpoint's root) and proves and checks
// inclusion (ProveRecord/CheckRecord) and consistency (ProveTree/CheckTree), and
// github.com/transparency-dev/formats/log parses the checkpoint body.
//
//	reader -url <prefix> -origin <origin> -vkey <verifier key> [-entry <index>=<hex entry>]... [-old <file>]
//
// -entry checks that the entry bundle holds exactly these bytes at that index and that the tree includes them;
// -old names a file holding an older signed checkpoint of the same log, proven consistent with the current one.
// On success it prints one JSON object (what was checked) and exits 0; on any failure it prints the reason to
// stderr and exits 1.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// tileHeight is fixed by c2sp.org/tlog-tiles: 256 hashes per full tile.
const tileHeight = 8

type entryFlag []string

func (e *entryFlag) String() string     { return strings.Join(*e, ",") }
func (e *entryFlag) Set(v string) error { *e = append(*e, v); return nil }

type fetcher struct {
	prefix   string
	client   *http.Client
	requests int
}

// get returns the body at prefix+path, or (nil, nil) for a 404.
func (f *fetcher) get(path string, limit int64) ([]byte, error) {
	f.requests++
	resp, err := f.client.Get(f.prefix + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", path, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("GET %s: body longer than %d bytes", path, limit)
	}
	return body, nil
}

// tlog-tiles paths are x/mod's sumdb tile paths without the height element: "tile/8/1/x001/234.p/5" in
// sumdb is "tile/1/x001/234.p/5" here; entry bundles sit where sumdb keeps data tiles, at "tile/entries/…".
func tilePath(t tlog.Tile) string {
	return strings.Replace(t.Path(), fmt.Sprintf("tile/%d/", tileHeight), "tile/", 1)
}

func bundlePath(t tlog.Tile) string {
	t.L = 0
	return strings.Replace(t.Path(), fmt.Sprintf("tile/%d/0/", tileHeight), "tile/entries/", 1)
}

// tileReader implements tlog.TileReader over HTTP. tlog.TileHashReader checks every tile it returns against
// the tree's root before using a hash from it, so nothing here needs to be trusted.
type tileReader struct{ f *fetcher }

func (r *tileReader) Height() int { return tileHeight }

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		want := t.W * tlog.HashSize
		data, err := r.f.get(tilePath(t), int64(1<<tileHeight)*tlog.HashSize)
		if err != nil {
			return nil, err
		}
		if data == nil && t.W < 1<<tileHeight {
			// c2sp.org/tlog-tiles: a log may delete a partial tile once the full tile exists, whose first W hashes
			// are the partial tile's.
			full := t
			full.W = 1 << tileHeight
			data, err = r.f.get(tilePath(full), int64(1<<tileHeight)*tlog.HashSize)
			if err != nil {
				return nil, err
			}
			if len(data) == (1<<tileHeight)*tlog.HashSize {
				data = data[:want]
			}
		}
		if data == nil {
			return nil, fmt.Errorf("tile %s is missing", tilePath(t))
		}
		if len(data) != want {
			return nil, fmt.Errorf("tile %s has %d bytes, want %d", tilePath(t), len(data), want)
		}
		out[i] = data
	}
	return out, nil
}

func (r *tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

type checkpoint struct {
	log.Checkpoint
	root tlog.Hash
}

func openCheckpoint(text []byte, origin string, verifier note.Verifier) (*checkpoint, error) {
	n, err := note.Open(text, note.VerifierList(verifier))
	if err != nil {
		return nil, fmt.Errorf("checkpoint does not verify: %w", err)
	}
	var cp checkpoint
	if _, err := cp.Unmarshal([]byte(n.Text)); err != nil {
		return nil, err
	}
	if cp.Origin != origin {
		return nil, fmt.Errorf("checkpoint origin is %q, want %q", cp.Origin, origin)
	}
	if len(cp.Hash) != tlog.HashSize {
		return nil, errors.New("checkpoint root is not 32 bytes")
	}
	copy(cp.root[:], cp.Hash)
	return &cp, nil
}

// readEntry returns entry `index` from its entry bundle in the tree of `size` (uint16 big-endian length-prefixed
// entries, exactly as many as the bundle's width).
func readEntry(f *fetcher, index, size int64) ([]byte, error) {
	t := tlog.TileForIndex(tileHeight, tlog.StoredHashIndex(0, index))
	t.W = int(min(int64(1)<<tileHeight, size-t.N<<tileHeight))
	body, err := f.get(bundlePath(t), int64(t.W)*(2+65535))
	width := t.W
	if err == nil && body == nil && t.W < 1<<tileHeight {
		width = 1 << tileHeight
		full := t
		full.W = width
		body, err = f.get(bundlePath(full), int64(width)*(2+65535))
	}
	if err != nil {
		return nil, err
	}
	if body == nil {
		return nil, fmt.Errorf("entry bundle %s is missing", bundlePath(t))
	}
	var entries [][]byte
	for rest := body; len(rest) > 0; {
		if len(rest) < 2 {
			return nil, errors.New("entry bundle ends inside a length prefix")
		}
		n := int(binary.BigEndian.Uint16(rest))
		if len(rest) < 2+n {
			return nil, errors.New("entry bundle ends inside an entry")
		}
		entries = append(entries, rest[2:2+n])
		rest = rest[2+n:]
	}
	if len(entries) != width {
		return nil, fmt.Errorf("entry bundle %s has %d entries, want %d", bundlePath(t), len(entries), width)
	}
	return entries[index-t.N<<tileHeight], nil
}

type entryResult struct {
	Index      int64 `json:"index"`
	ProofSize  int   `json:"proofHashes"`
	BundleSize int   `json:"entryBytes"`
}

type result struct {
	Origin      string        `json:"origin"`
	Size        uint64        `json:"size"`
	Root        string        `json:"root"`
	Entries     []entryResult `json:"entries"`
	Consistency *struct {
		From      uint64 `json:"from"`
		To        uint64 `json:"to"`
		ProofSize int    `json:"proofHashes"`
	} `json:"consistency,omitempty"`
	Requests int `json:"requests"`
}

func run() (*result, error) {
	prefix := flag.String("url", "", "the log's URL prefix (the checkpoint is at <prefix>/checkpoint)")
	origin := flag.String("origin", "", "the log's checkpoint origin")
	vkey := flag.String("vkey", "", "the log's verifier key (golang.org/x/mod/sumdb/note form, Ed25519)")
	old := flag.String("old", "", "a file holding an older signed checkpoint of the log, to prove consistency from")
	var entryArgs entryFlag
	flag.Var(&entryArgs, "entry", "<index>=<hex entry bytes>: an entry to find in its bundle and prove included (repeatable)")
	flag.Parse()
	if *prefix == "" || *origin == "" || *vkey == "" {
		return nil, errors.New("-url, -origin and -vkey are required")
	}
	verifier, err := note.NewVerifier(*vkey)
	if err != nil {
		return nil, fmt.Errorf("verifier key: %w", err)
	}
	f := &fetcher{prefix: strings.TrimSuffix(*prefix, "/") + "/", client: &http.Client{Timeout: 10 * time.Second}}

	text, err := f.get("checkpoint", 1<<20)
	if err != nil {
		return nil, err
	}
	if text == nil {
		return nil, errors.New("the log has no checkpoint")
	}
	cp, err := openCheckpoint(text, *origin, verifier)
	if err != nil {
		return nil, err
	}
	size := int64(cp.Size)
	tree := tlog.Tree{N: size, Hash: cp.root}
	hashes := tlog.TileHashReader(tree, &tileReader{f: f})
	if size > 0 {
		// Recomputes the root from the tiles: TileHashReader refuses tiles that do not lead to it.
		if root, err := tlog.TreeHash(size, hashes); err != nil || root != cp.root {
			return nil, fmt.Errorf("tiles do not reproduce the checkpoint's root: %v", err)
		}
	}
	res := &result{Origin: cp.Origin, Size: cp.Size, Root: base64.StdEncoding.EncodeToString(cp.Hash), Entries: []entryResult{}}

	for _, arg := range entryArgs {
		indexText, hexEntry, ok := strings.Cut(arg, "=")
		index, err1 := strconv.ParseInt(indexText, 10, 64)
		want, err2 := hex.DecodeString(hexEntry)
		if !ok || err1 != nil || err2 != nil || index < 0 {
			return nil, fmt.Errorf("bad -entry %q: want <index>=<hex>", arg)
		}
		if index >= size {
			return nil, fmt.Errorf("entry %d is not in the tree of size %d", index, size)
		}
		got, err := readEntry(f, index, size)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(got, want) {
			return nil, fmt.Errorf("entry %d in the bundle is %x, want %x", index, got, want)
		}
		proof, err := tlog.ProveRecord(size, index, hashes)
		if err != nil {
			return nil, fmt.Errorf("proving entry %d: %w", index, err)
		}
		if err := tlog.CheckRecord(proof, size, cp.root, index, tlog.RecordHash(want)); err != nil {
			return nil, fmt.Errorf("entry %d: %w", index, err)
		}
		res.Entries = append(res.Entries, entryResult{Index: index, ProofSize: len(proof), BundleSize: len(got)})
	}

	if *old != "" {
		oldText, err := os.ReadFile(*old)
		if err != nil {
			return nil, err
		}
		oldCp, err := openCheckpoint(oldText, *origin, verifier)
		if err != nil {
			return nil, fmt.Errorf("old checkpoint: %w", err)
		}
		if oldCp.Size > cp.Size {
			return nil, fmt.Errorf("old checkpoint (size %d) is larger than the current one (%d)", oldCp.Size, cp.Size)
		}
		proof, err := tlog.ProveTree(size, int64(oldCp.Size), hashes)
		if err != nil {
			return nil, fmt.Errorf("proving consistency: %w", err)
		}
		if err := tlog.CheckTree(proof, size, cp.root, int64(oldCp.Size), oldCp.root); err != nil {
			return nil, fmt.Errorf("consistency from %d to %d: %w", oldCp.Size, cp.Size, err)
		}
		res.Consistency = &struct {
			From      uint64 `json:"from"`
			To        uint64 `json:"to"`
			ProofSize int    `json:"proofHashes"`
		}{oldCp.Size, cp.Size, len(proof)}
	}
	res.Requests = f.requests
	return res, nil
}

func main() {
	res, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "reader:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}
