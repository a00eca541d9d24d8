package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// custodyBin builds the custody binary once per test run, for tests that
// must run it as a separate process (to kill -9 it, or signal it).
func custodyBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "custody-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "custody")
		out, err := exec.Command("go", "build", "-race", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = err
			binPath = string(out)
		}
	})
	if binErr != nil {
		t.Fatalf("cannot build custody: %v\n%s", binErr, binPath)
	}
	return binPath
}
