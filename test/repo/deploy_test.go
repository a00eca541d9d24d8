package repo

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/custodylog/custody/internal/config"
)

// The deployment examples of docs/deploy stay valid: every Kubernetes
// document parses, its Custody configuration parses with unknown keys
// refused (a misspelt key fails here, not in a cluster), and every systemd
// unit starts a custody command with a configuration file.
func TestDeployExamples(t *testing.T) {
	root := filepath.Join("..", "..")
	b, err := os.ReadFile(filepath.Join(root, "docs", "deploy", "kubernetes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	kinds := map[string]int{}
	for i := 0; ; i++ {
		var doc struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("kubernetes.yaml document %d: %v", i, err)
		}
		kinds[doc.Kind]++
		if cfg, ok := doc.Data["custody.yaml"]; ok {
			if _, err := config.Parse([]byte(cfg), t.TempDir()); err != nil {
				t.Errorf("the ConfigMap's custody.yaml: %v", err)
			}
		}
	}
	if kinds["Deployment"] != 3 || kinds["DaemonSet"] != 1 || kinds["ConfigMap"] != 1 {
		t.Errorf("kubernetes.yaml kinds %v; want ingest, archiver and serve Deployments, the agent DaemonSet and the ConfigMap", kinds)
	}
	units, _ := filepath.Glob(filepath.Join(root, "docs", "deploy", "*.service"))
	if len(units) != 4 {
		t.Fatalf("%d systemd units; want ingest, archiver, serve and agent", len(units))
	}
	exec := regexp.MustCompile(`(?m)^ExecStart=/usr/local/bin/custody ((?:ingest|archive run|serve|agent)) --config /etc/custody/custody\.yaml$`)
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		if !exec.Match(b) || !strings.Contains(string(b), "KillSignal=SIGTERM") {
			t.Errorf("%s: want ExecStart of a custody long-running command with --config, stopped by SIGTERM", filepath.Base(u))
		}
	}
}
