// Prints, for each tree size given, the tree hash and every tlog tile (height 8) of that size as
// golang.org/x/mod/sumdb/tlog computes them, for entries read from stdin (one hex entry per line, then a
// line "sizes" and one size per line). auditsink's tiles tests compare their own output with this.
package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/mod/sumdb/tlog"
)

type tileOut struct {
	Path string `json:"path"`
	Hex  string `json:"hex"`
}

type sizeOut struct {
	Size  int64     `json:"size"`
	Root  string    `json:"root"`
	Tiles []tileOut `json:"tiles"`
}

type memHashes []tlog.Hash

func (m memHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		out[i] = m[x]
	}
	return out, nil
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	var hashes memHashes
	n := int64(0)
	var sizes []int64
	readingSizes := false
	for in.Scan() {
		line := in.Text()
		if line == "sizes" {
			readingSizes = true
			continue
		}
		if readingSizes {
			s, err := strconv.ParseInt(line, 10, 64)
			if err != nil {
				panic(err)
			}
			sizes = append(sizes, s)
			continue
		}
		entry, err := hex.DecodeString(line)
		if err != nil {
			panic(err)
		}
		stored, err := tlog.StoredHashes(n, entry, hashes)
		if err != nil {
			panic(err)
		}
		hashes = append(hashes, stored...)
		n++
	}
	var out []sizeOut
	for _, s := range sizes {
		root, err := tlog.TreeHash(s, hashes)
		if err != nil {
			panic(err)
		}
		so := sizeOut{Size: s, Root: hex.EncodeToString(root[:]), Tiles: []tileOut{}}
		for _, t := range tlog.NewTiles(8, 0, s) {
			data, err := tlog.ReadTileData(t, hashes)
			if err != nil {
				panic(err)
			}
			so.Tiles = append(so.Tiles, tileOut{Path: t.Path(), Hex: hex.EncodeToString(data)})
		}
		out = append(out, so)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
