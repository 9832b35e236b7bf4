// Command redlineinterop checks a redline transparency log with Go's reference
// implementation, golang.org/x/mod/sumdb/note and golang.org/x/mod/sumdb/tlog.
//
// Usage: redlineinterop <case.json>
//
// The JSON file (written by tests/test_go_interop.py) holds the log's verifier
// key, its signed checkpoints, every leaf as redline stores it (8-byte
// integration time || entry), the stored hashes from redline's SQLite "hashes"
// table, inclusion and consistency proofs made by redline, and stored-hash
// index arithmetic to compare. Every check prints one line, "ok <check> ..." or
// "FAIL <check> ...: <why>", and every check runs even after a failure. The
// exit status is 0 when all checks pass, 1 when any check fails and 2 when the
// input cannot be used at all.
//
// Built in GOPATH mode against Debian's golang-golang-x-mod-dev; standard
// library and x/mod only.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type checkpointIn struct {
	Size int64  `json:"size"`
	Note string `json:"note"` // base64 of the signed note bytes
}

type storedHashIn struct {
	Index int64  `json:"index"`
	Hash  string `json:"hash"`
}

type inclusionIn struct {
	Index    int64    `json:"index"`
	TreeSize int64    `json:"treeSize"`
	Proof    []string `json:"proof"`
}

type consistencyIn struct {
	Old   int64    `json:"old"`
	New   int64    `json:"new"`
	Proof []string `json:"proof"`
}

type storedHashIndexIn struct {
	Level int   `json:"level"`
	N     int64 `json:"n"`
	Want  int64 `json:"want"`
}

type storedHashCountIn struct {
	N    int64 `json:"n"`
	Want int64 `json:"want"`
}

type splitStoredHashIndexIn struct {
	Index     int64 `json:"index"`
	WantLevel int   `json:"wantLevel"`
	WantN     int64 `json:"wantN"`
}

type input struct {
	VerifierKey          string                   `json:"verifierKey"`
	Checkpoints          []checkpointIn           `json:"checkpoints"`
	Leaves               []string                 `json:"leaves"`
	StoredHashes         []storedHashIn           `json:"storedHashes"`
	Inclusion            []inclusionIn            `json:"inclusion"`
	Consistency          []consistencyIn          `json:"consistency"`
	StoredHashIndex      []storedHashIndexIn      `json:"storedHashIndex"`
	StoredHashCount      []storedHashCountIn      `json:"storedHashCount"`
	SplitStoredHashIndex []splitStoredHashIndexIn `json:"splitStoredHashIndex"`
}

var failures int

func ok(format string, args ...interface{}) {
	fmt.Printf("ok "+format+"\n", args...)
}

func fail(format string, args ...interface{}) {
	failures++
	fmt.Printf("FAIL "+format+"\n", args...)
}

func fatal(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "redlineinterop: "+format+"\n", args...)
	os.Exit(2)
}

func decodeHash(s string) (tlog.Hash, error) {
	var h tlog.Hash
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return h, err
	}
	if len(b) != tlog.HashSize {
		return h, fmt.Errorf("hash is %d bytes, not %d", len(b), tlog.HashSize)
	}
	copy(h[:], b)
	return h, nil
}

func decodeProof(in []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(in))
	for i, s := range in {
		h, err := decodeHash(s)
		if err != nil {
			return nil, fmt.Errorf("proof hash %d: %v", i, err)
		}
		out[i] = h
	}
	return out, nil
}

// parseCheckpointText parses C2SP tlog-checkpoint note text: origin, decimal
// size, base64 root, each ending in a newline, then any extension lines (redline
// numbers its checkpoints in one: "redline-checkpoint <n>"; none may be empty).
// tlog.ParseTree expects the go.sum header, so this parses it by hand.
func parseCheckpointText(text string) (origin string, tree tlog.Tree, err error) {
	if !strings.HasSuffix(text, "\n") {
		return "", tree, errors.New("checkpoint text does not end in a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return "", tree, fmt.Errorf("checkpoint text has %d lines, want at least 3", len(lines))
	}
	for _, ext := range lines[3:] {
		if ext == "" {
			return "", tree, errors.New("empty extension line")
		}
	}
	origin = lines[0]
	if origin == "" {
		return "", tree, errors.New("empty origin line")
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		return "", tree, fmt.Errorf("bad tree size %q", lines[1])
	}
	h, err := decodeHash(lines[2])
	if err != nil {
		return "", tree, fmt.Errorf("bad root hash %q: %v", lines[2], err)
	}
	if base64.StdEncoding.EncodeToString(h[:]) != lines[2] {
		return "", tree, fmt.Errorf("root hash %q is not canonical base64", lines[2])
	}
	return origin, tlog.Tree{N: n, Hash: h}, nil
}

// unverifiedText is the text of a note whose signature did not verify, so that
// the checks that do not depend on the signature still run and are reported.
func unverifiedText(msg []byte) (string, bool) {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return "", false
	}
	return string(msg[:i+1]), true
}

func main() {
	if len(os.Args) != 2 {
		fatal("usage: redlineinterop <case.json>")
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fatal("%v", err)
	}
	var in input
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		fatal("parsing %s: %v", os.Args[1], err)
	}

	verifier, err := note.NewVerifier(in.VerifierKey)
	if err != nil {
		fatal("note.NewVerifier(%q): %v", in.VerifierKey, err)
	}

	// Stored-hash index arithmetic.
	for _, c := range in.StoredHashIndex {
		got := tlog.StoredHashIndex(c.Level, c.N)
		if got != c.Want {
			fail("stored-hash-index level=%d n=%d: tlog.StoredHashIndex=%d, redline=%d", c.Level, c.N, got, c.Want)
		} else {
			ok("stored-hash-index level=%d n=%d = %d", c.Level, c.N, got)
		}
	}
	for _, c := range in.StoredHashCount {
		got := tlog.StoredHashCount(c.N)
		if got != c.Want {
			fail("stored-hash-count n=%d: tlog.StoredHashCount=%d, redline=%d", c.N, got, c.Want)
		} else {
			ok("stored-hash-count n=%d = %d", c.N, got)
		}
	}
	for _, c := range in.SplitStoredHashIndex {
		level, n := tlog.SplitStoredHashIndex(c.Index)
		if level != c.WantLevel || n != c.WantN {
			fail("split-stored-hash-index index=%d: tlog.SplitStoredHashIndex=(%d, %d), redline=(%d, %d)",
				c.Index, level, n, c.WantLevel, c.WantN)
		} else {
			ok("split-stored-hash-index index=%d = (%d, %d)", c.Index, level, n)
		}
	}

	// Leaves, their record hashes and the stored hashes, built by tlog.
	leaves := make([][]byte, len(in.Leaves))
	leafHashes := make([]tlog.Hash, len(in.Leaves))
	for i, s := range in.Leaves {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			fatal("leaf %d: %v", i, err)
		}
		leaves[i] = b
		leafHashes[i] = tlog.RecordHash(b)
	}
	var stored []tlog.Hash
	reader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			if x < 0 || x >= int64(len(stored)) {
				return nil, fmt.Errorf("stored hash %d not written (have %d)", x, len(stored))
			}
			out[i] = stored[x]
		}
		return out, nil
	})
	for i, leaf := range leaves {
		if want := tlog.StoredHashIndex(0, int64(i)); int64(len(stored)) != want {
			fatal("before leaf %d: %d stored hashes, tlog.StoredHashIndex(0, %d)=%d", i, len(stored), i, want)
		}
		hs, err := tlog.StoredHashes(int64(i), leaf, reader)
		if err != nil {
			fatal("tlog.StoredHashes(%d): %v", i, err)
		}
		stored = append(stored, hs...)
	}

	// redline's SQLite "hashes" table against tlog.StoredHashes.
	func() {
		n := int64(len(leaves))
		if want := tlog.StoredHashCount(n); int64(len(stored)) != want {
			fail("stored-hashes leaves=%d: tlog built %d hashes, tlog.StoredHashCount=%d", n, len(stored), want)
			return
		}
		if len(in.StoredHashes) != len(stored) {
			fail("stored-hashes leaves=%d: redline stored %d hashes, tlog.StoredHashes wrote %d", n, len(in.StoredHashes), len(stored))
			return
		}
		for i, sh := range in.StoredHashes {
			if sh.Index != int64(i) {
				fail("stored-hashes leaves=%d: row %d has index %d", n, i, sh.Index)
				return
			}
			h, err := decodeHash(sh.Hash)
			if err != nil {
				fail("stored-hashes leaves=%d: stored hash %d: %v", n, i, err)
				return
			}
			if h != stored[i] {
				level, idx := tlog.SplitStoredHashIndex(int64(i))
				fail("stored-hashes leaves=%d: stored hash %d (level %d, n %d) is %s, tlog.StoredHashes gives %s",
					n, i, level, idx, h, stored[i])
				return
			}
		}
		ok("stored-hashes leaves=%d count=%d", n, len(stored))
	}()

	// Checkpoints: signature with note.Open, root with tlog.TreeHash.
	trees := map[int64]tlog.Tree{}
	for _, c := range in.Checkpoints {
		msg, err := base64.StdEncoding.DecodeString(c.Note)
		if err != nil {
			fatal("checkpoint %d: %v", c.Size, err)
		}
		var text string
		n, err := note.Open(msg, note.VerifierList(verifier))
		if err != nil {
			fail("checkpoint-signature size=%d: note.Open: %v", c.Size, err)
			t, found := unverifiedText(msg)
			if !found {
				continue
			}
			text = t
		} else if len(n.Sigs) != 1 || n.Sigs[0].Name != verifier.Name() || n.Sigs[0].Hash != verifier.KeyHash() {
			fail("checkpoint-signature size=%d: verified signatures %v, want exactly the log key's", c.Size, n.Sigs)
			text = n.Text
		} else {
			ok("checkpoint-signature size=%d key=%s+%08x", c.Size, verifier.Name(), verifier.KeyHash())
			text = n.Text
		}
		origin, tree, err := parseCheckpointText(text)
		if err != nil {
			fail("checkpoint-root size=%d: %v", c.Size, err)
			continue
		}
		if origin != verifier.Name() || tree.N != c.Size {
			fail("checkpoint-root size=%d: checkpoint says origin %q size %d, want origin %q size %d",
				c.Size, origin, tree.N, verifier.Name(), c.Size)
			continue
		}
		trees[tree.N] = tree
		if tree.N > int64(len(leaves)) {
			fail("checkpoint-root size=%d: only %d leaves given", tree.N, len(leaves))
			continue
		}
		var want tlog.Hash
		if tree.N == 0 {
			// tlog.TreeHash defines the empty tree's hash as all zeros; RFC 6962,
			// RFC 9162 and C2SP use SHA-256 of the empty string, as redline does.
			want = sha256.Sum256(nil)
		} else {
			want, err = tlog.TreeHash(tree.N, reader)
			if err != nil {
				fail("checkpoint-root size=%d: tlog.TreeHash: %v", tree.N, err)
				continue
			}
		}
		if want != tree.Hash {
			fail("checkpoint-root size=%d: checkpoint root %s, tlog.TreeHash over the leaves gives %s", tree.N, tree.Hash, want)
			continue
		}
		ok("checkpoint-root size=%d root=%s", tree.N, tree.Hash)
	}

	// Inclusion proofs with tlog.CheckRecord.
	for _, p := range in.Inclusion {
		tree, found := trees[p.TreeSize]
		if !found {
			fail("inclusion index=%d size=%d: no checkpoint of size %d", p.Index, p.TreeSize, p.TreeSize)
			continue
		}
		if p.Index < 0 || p.Index >= int64(len(leafHashes)) {
			fail("inclusion index=%d size=%d: no such leaf", p.Index, p.TreeSize)
			continue
		}
		proof, err := decodeProof(p.Proof)
		if err != nil {
			fail("inclusion index=%d size=%d: %v", p.Index, p.TreeSize, err)
			continue
		}
		if err := tlog.CheckRecord(tlog.RecordProof(proof), tree.N, tree.Hash, p.Index, leafHashes[p.Index]); err != nil {
			fail("inclusion index=%d size=%d: tlog.CheckRecord: %v", p.Index, p.TreeSize, err)
			continue
		}
		ok("inclusion index=%d size=%d hashes=%d", p.Index, p.TreeSize, len(proof))
	}

	// Consistency proofs with tlog.CheckTree between two checkpoints.
	for _, p := range in.Consistency {
		oldTree, foundOld := trees[p.Old]
		newTree, foundNew := trees[p.New]
		if !foundOld || !foundNew {
			fail("consistency old=%d new=%d: no checkpoint of each size", p.Old, p.New)
			continue
		}
		proof, err := decodeProof(p.Proof)
		if err != nil {
			fail("consistency old=%d new=%d: %v", p.Old, p.New, err)
			continue
		}
		if err := tlog.CheckTree(tlog.TreeProof(proof), newTree.N, newTree.Hash, oldTree.N, oldTree.Hash); err != nil {
			fail("consistency old=%d new=%d: tlog.CheckTree: %v", p.Old, p.New, err)
			continue
		}
		ok("consistency old=%d new=%d hashes=%d", p.Old, p.New, len(proof))
	}

	if failures > 0 {
		fmt.Printf("%d check(s) failed\n", failures)
		os.Exit(1)
	}
}
