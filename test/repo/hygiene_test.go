// Package repo checks the repository itself: what is committed, and what
// production code may import.
package repo

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func root(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Regression test: a 22.6 MB ELF binary `custody` was committed at the
// root. No tracked file is a compiled binary or larger than 4 MiB, and
// build output is ignored.
func TestNoBuildOutputCommitted(t *testing.T) {
	r := root(t)
	out, err := exec.Command("git", "-C", r, "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v (the repository checks need a git checkout)", err)
	}
	files := strings.Split(strings.TrimRight(string(out), "\x00"), "\x00")
	if len(files) < 50 {
		t.Fatalf("git ls-files lists %d files; want the whole tree", len(files))
	}
	for _, f := range files {
		p := filepath.Join(r, f)
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the work tree, or a link
		}
		if fi.Size() > 4<<20 {
			t.Errorf("%s is %d bytes; build output and data sets do not belong in the repository", f, fi.Size())
		}
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 4)
		n, _ := fh.Read(head)
		fh.Close()
		if bytes.Equal(head[:n], []byte("\x7fELF")) {
			t.Errorf("%s is an ELF binary", f)
		}
	}
	for _, f := range []string{"custody", "bin/custody", "cmd/custody/custody.test", "cpu.prof", ".stack/env"} {
		if err := exec.Command("git", "-C", r, "check-ignore", "-q", "--no-index", f).Run(); err != nil {
			t.Errorf("%s is not ignored by .gitignore", f)
		}
	}
}

// Test fixtures stay out of the binary: production packages never import
// internal/testkit.
func TestFixturesNotInProduction(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/custodylog/custody/cmd/custody").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	if !strings.Contains(string(out), "github.com/custodylog/custody/event\n") {
		t.Fatalf("go list -deps output does not look right:\n%s", out)
	}
	for _, p := range strings.Split(string(out), "\n") {
		if strings.Contains(p, "/internal/testkit") {
			t.Errorf("custody links the test fixture %s", p)
		}
	}
}
