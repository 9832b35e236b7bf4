// Command redlinetilereader checks a redline log served over HTTP as C2SP
// tlog-tiles with Go's reference code, golang.org/x/mod/sumdb/note and
// golang.org/x/mod/sumdb/tlog.
//
// Usage: redlinetilereader <server-url> <verifier-key> [history.json]
//
// It fetches <server-url>/checkpoint and verifies it with note.Open; the
// optional JSON file {"checkpoints": ["<base64 signed note>", ...]} names
// earlier signed checkpoints of the same log. For EVERY checkpoint it builds a
// tlog.TileHashReader over HTTP GETs of <server-url>/tile/<L>/<N>[.p/<W>]
// (the C2SP layout: no tile height in the path), recomputes the tree hash with
// tlog.TreeHash, proves and checks inclusion of the first, middle and last
// entries (leaves read from tile/entries/<N>[.p/<W>] bundles) and checks
// consistency with the previous checkpoint. The checkpoint text may carry
// extension lines after the root: only the first three lines are read.
//
// Each check prints "ok <check> ..." or "FAIL <check> ...: <why>"; the exit
// status is 0 when all pass, 1 when any fails and 2 when nothing can be checked.
// Standard library and x/mod only, built in GOPATH mode.
package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const maxBody = 16 << 20

type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

var client = &http.Client{Timeout: 30 * time.Second}

func get(url string) ([]byte, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return data, nil
}

// parseCheckpoint verifies a signed checkpoint and reads its first three lines.
func parseCheckpoint(msg []byte, verifiers note.Verifiers, origin string) (checkpoint, error) {
	n, err := note.Open(msg, verifiers)
	if err != nil {
		return checkpoint{}, fmt.Errorf("note.Open: %w", err)
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 {
		return checkpoint{}, errors.New("checkpoint has fewer than three lines")
	}
	if lines[0] != origin {
		return checkpoint{}, fmt.Errorf("origin %q is not the key's name %q", lines[0], origin)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return checkpoint{}, fmt.Errorf("bad tree size %q", lines[1])
	}
	raw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(raw) != tlog.HashSize {
		return checkpoint{}, fmt.Errorf("bad root hash %q", lines[2])
	}
	var root tlog.Hash
	copy(root[:], raw)
	return checkpoint{origin: lines[0], size: size, root: root}, nil
}

// indexPath is N in 3-digit groups, all but the last prefixed x (1234067: x001/x234/067).
func indexPath(n int64) string {
	groups := []string{fmt.Sprintf("%03d", n%1000)}
	for n /= 1000; n > 0; n /= 1000 {
		groups = append([]string{fmt.Sprintf("x%03d", n%1000)}, groups...)
	}
	return strings.Join(groups, "/")
}

func widthSuffix(w int) string {
	if w == 1<<8 {
		return ""
	}
	return fmt.Sprintf(".p/%d", w)
}

// httpTiles is a tlog.TileReader over C2SP tile URLs.
type httpTiles struct {
	base    string
	fetched int
}

func (r *httpTiles) Height() int { return 8 }

func (r *httpTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		if t.H != 8 || t.L < 0 {
			return nil, fmt.Errorf("unexpected tile %+v", t)
		}
		data, err := get(fmt.Sprintf("%s/tile/%d/%s%s", r.base, t.L, indexPath(t.N), widthSuffix(t.W)))
		if err != nil {
			return nil, err
		}
		r.fetched++
		out[i] = data
	}
	return out, nil
}

func (r *httpTiles) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

// leaf reads entry index from the entry bundle the tree of size holds it in.
func leaf(base string, size, index int64) ([]byte, error) {
	n := index / 256
	w := int64(256)
	if (n+1)*256 > size {
		w = size - n*256
	}
	data, err := get(fmt.Sprintf("%s/tile/entries/%s%s", base, indexPath(n), widthSuffix(int(w))))
	if err != nil {
		return nil, err
	}
	var entries [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, errors.New("truncated entry bundle")
		}
		l := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+l {
			return nil, errors.New("truncated entry in bundle")
		}
		entries = append(entries, data[2:2+l])
		data = data[2+l:]
	}
	if int64(len(entries)) != w {
		return nil, fmt.Errorf("bundle holds %d entries, want %d", len(entries), w)
	}
	return entries[index-n*256], nil
}

var failed bool

func report(check string, err error) {
	if err != nil {
		failed = true
		fmt.Printf("FAIL %s: %v\n", check, err)
	} else {
		fmt.Printf("ok %s\n", check)
	}
}

func checkTree(base string, cp checkpoint) {
	if cp.size == 0 { // RFC 6962's empty root, SHA-256 of nothing (Go's tlog.TreeHash(0) is the zero hash)
		var err error
		if cp.root != tlog.Hash(sha256.Sum256(nil)) {
			err = fmt.Errorf("empty tree root %v is not SHA-256 of nothing", cp.root)
		}
		report("tree-hash size=0", err)
		return
	}
	tiles := &httpTiles{base: base}
	reader := tlog.TileHashReader(tlog.Tree{N: cp.size, Hash: cp.root}, tiles)
	h, err := tlog.TreeHash(cp.size, reader)
	if err == nil && h != cp.root {
		err = fmt.Errorf("tree hash %v, checkpoint says %v", h, cp.root)
	}
	report(fmt.Sprintf("tree-hash size=%d", cp.size), err)
	indexes := map[int64]bool{0: true, cp.size / 2: true, cp.size - 1: true}
	keys := make([]int64, 0, len(indexes))
	for i := range indexes {
		keys = append(keys, i)
	}
	sort.Slice(keys, func(a, b int) bool { return keys[a] < keys[b] })
	for _, i := range keys {
		err := func() error {
			data, err := leaf(base, cp.size, i)
			if err != nil {
				return err
			}
			proof, err := tlog.ProveRecord(cp.size, i, reader)
			if err != nil {
				return fmt.Errorf("ProveRecord: %w", err)
			}
			return tlog.CheckRecord(proof, cp.size, cp.root, i, tlog.RecordHash(data))
		}()
		report(fmt.Sprintf("inclusion size=%d index=%d", cp.size, i), err)
	}
}

func checkConsistency(base string, old, cur checkpoint) {
	reader := tlog.TileHashReader(tlog.Tree{N: cur.size, Hash: cur.root}, &httpTiles{base: base})
	proof, err := tlog.ProveTree(cur.size, old.size, reader)
	if err == nil {
		err = tlog.CheckTree(proof, cur.size, cur.root, old.size, old.root)
	}
	report(fmt.Sprintf("consistency old=%d new=%d", old.size, cur.size), err)
}

func main() {
	if len(os.Args) < 3 || len(os.Args) > 4 {
		fmt.Fprintln(os.Stderr, "usage: redlinetilereader <server-url> <verifier-key> [history.json]")
		os.Exit(2)
	}
	base := strings.TrimRight(os.Args[1], "/")
	verifier, err := note.NewVerifier(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad verifier key:", err)
		os.Exit(2)
	}
	verifiers := note.VerifierList(verifier)
	var notes [][]byte
	if len(os.Args) == 4 {
		raw, err := os.ReadFile(os.Args[3])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		var history struct {
			Checkpoints []string `json:"checkpoints"`
		}
		if err := json.Unmarshal(raw, &history); err != nil {
			fmt.Fprintln(os.Stderr, "bad history file:", err)
			os.Exit(2)
		}
		for _, s := range history.Checkpoints {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				fmt.Fprintln(os.Stderr, "bad history checkpoint:", err)
				os.Exit(2)
			}
			notes = append(notes, b)
		}
	}
	latest, err := get(base + "/checkpoint")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	notes = append(notes, latest)
	var cps []checkpoint
	seen := map[int64]tlog.Hash{}
	for k, msg := range notes {
		cp, err := parseCheckpoint(msg, verifiers, verifier.Name())
		if root, dup := seen[cp.size]; err == nil && dup && root != cp.root {
			err = fmt.Errorf("two checkpoints of size %d with different roots", cp.size)
		}
		report(fmt.Sprintf("checkpoint %d", k), err)
		if _, dup := seen[cp.size]; err == nil && !dup {
			seen[cp.size] = cp.root
			cps = append(cps, cp)
		}
	}
	sort.Slice(cps, func(a, b int) bool { return cps[a].size < cps[b].size })
	for k, cp := range cps {
		checkTree(base, cp)
		if k > 0 && cps[k-1].size > 0 && cps[k-1].size < cp.size {
			checkConsistency(base, cps[k-1], cp)
		}
	}
	fmt.Printf("checked %d checkpoints\n", len(cps))
	if failed {
		os.Exit(1)
	}
}
