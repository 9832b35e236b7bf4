// Command noteopen opens signed notes with Go's reference implementation,
// golang.org/x/mod/sumdb/note, so that tests/test_note_go.py can check that
// redline's open_note accepts and refuses exactly the same notes.
//
// Usage: noteopen <cases.json>
//
// The JSON file holds a list of cases, each {"name", "note" (base64 of the note
// bytes), "keys" (verifier-key strings)}. For each case one JSON line is
// printed: {"name", "ok", "verified" (name+hash of each verified signature, in
// order), "unverified" (the same for the signatures Open kept unverified),
// "text", "error" (the error's text), "kind" (malformed, invalid-signature,
// unverified, ambiguous, other)}. The exit status is 0, or 2 when the input
// cannot be used at all.
//
// Built in GOPATH mode against Debian's golang-golang-x-mod-dev; standard
// library and x/mod only.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

type caseIn struct {
	Name string   `json:"name"`
	Note string   `json:"note"`
	Keys []string `json:"keys"`
}

type caseOut struct {
	Name       string   `json:"name"`
	OK         bool     `json:"ok"`
	Verified   []string `json:"verified"`
	Unverified []string `json:"unverified"`
	Text       string   `json:"text"`
	Error      string   `json:"error"`
	Kind       string   `json:"kind"`
}

func fatal(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "noteopen: "+format+"\n", args...)
	os.Exit(2)
}

func kind(err error) string {
	switch err.(type) {
	case *note.InvalidSignatureError:
		return "invalid-signature"
	case *note.UnverifiedNoteError:
		return "unverified"
	}
	switch {
	case err.Error() == "malformed note":
		return "malformed"
	case strings.HasPrefix(err.Error(), "ambiguous key "):
		return "ambiguous"
	}
	return "other"
}

func sigs(list []note.Signature) []string {
	out := []string{}
	for _, s := range list {
		out = append(out, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
	}
	return out
}

func main() {
	if len(os.Args) != 2 {
		fatal("usage: noteopen <cases.json>")
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fatal("%v", err)
	}
	var cases []caseIn
	if err := json.Unmarshal(raw, &cases); err != nil {
		fatal("%v", err)
	}
	enc := json.NewEncoder(os.Stdout)
	for _, c := range cases {
		msg, err := base64.StdEncoding.DecodeString(c.Note)
		if err != nil {
			fatal("case %s: %v", c.Name, err)
		}
		var verifiers []note.Verifier
		for _, k := range c.Keys {
			v, err := note.NewVerifier(k)
			if err != nil {
				fatal("case %s: note.NewVerifier(%q): %v", c.Name, k, err)
			}
			verifiers = append(verifiers, v)
		}
		out := caseOut{Name: c.Name, Verified: []string{}, Unverified: []string{}}
		n, err := note.Open(msg, note.VerifierList(verifiers...))
		if err != nil {
			out.Error, out.Kind = err.Error(), kind(err)
		} else {
			out.OK, out.Text = true, n.Text
			out.Verified, out.Unverified = sigs(n.Sigs), sigs(n.UnverifiedSigs)
		}
		if err := enc.Encode(out); err != nil {
			fatal("%v", err)
		}
	}
}
