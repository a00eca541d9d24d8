package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/ingest"
)

// pushEnv is who pushed, as the git server tells a hook. docs/EVENTS.md
// lists the variables; the CUSTODY_PUSH_* ones win over server-specific ones.
type pushEnv struct {
	Login, IP, UserAgent, Protocol, Repo string
	Port                                 int
}

func firstEnv(getenv func(string) string, names ...string) string {
	for _, n := range names {
		if v := getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func readPushEnv(getenv func(string) string) pushEnv {
	p := pushEnv{
		Login:     firstEnv(getenv, "CUSTODY_PUSH_LOGIN", "GL_USERNAME", "GITEA_PUSHER_NAME", "REMOTE_USER", "USER"),
		IP:        firstEnv(getenv, "CUSTODY_PUSH_IP", "REMOTE_ADDR"),
		UserAgent: firstEnv(getenv, "CUSTODY_PUSH_USER_AGENT", "HTTP_USER_AGENT"),
		Protocol:  firstEnv(getenv, "CUSTODY_PUSH_PROTOCOL", "GL_PROTOCOL"),
		Repo:      firstEnv(getenv, "CUSTODY_REPO", "GL_PROJECT_PATH", "GL_REPOSITORY"),
	}
	if p.Repo == "" && getenv("GITEA_REPO_NAME") != "" {
		p.Repo = getenv("GITEA_REPO_USER_NAME") + "/" + getenv("GITEA_REPO_NAME")
	}
	// OpenSSH sets SSH_CONNECTION="client_ip client_port server_ip server_port".
	if f := strings.Fields(getenv("SSH_CONNECTION")); len(f) == 4 {
		if p.IP == "" {
			p.IP = f[0]
		}
		fmt.Sscanf(f[1], "%d", &p.Port)
		if p.Protocol == "" {
			p.Protocol = "ssh"
		}
	}
	if p.Protocol == "" && (getenv("REMOTE_ADDR") != "" || getenv("GIT_HTTP_EXPORT_ALL") != "") {
		p.Protocol = "https"
	}
	if p.Protocol == "http" {
		p.Protocol = "https"
	}
	if h, _, err := net.SplitHostPort(p.IP); err == nil {
		p.IP = h
	}
	return p
}

// pushEvents turns post-receive lines ("<old> <new> <ref>") into
// source_change events, as JSON for event.Decode.
func pushEvents(r io.Reader, now time.Time, tenant, app string, p pushEnv) ([][]byte, error) {
	var out [][]byte
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("stdin line %d: want \"<old> <new> <ref>\", got %q", n, sc.Text())
		}
		oldC, newC, ref := f[0], f[1], f[2]
		action := "modify"
		switch {
		case strings.Trim(oldC, "0") == "":
			action = "create"
		case strings.Trim(newC, "0") == "":
			action = "delete"
		}
		ev := map[string]any{
			// The ID is a function of the ref update, so a retried hook
			// sends the same event again rather than a second one.
			"id":   event.DeriveID(now, []byte(tenant), []byte(p.Repo), []byte(ref), []byte(oldC), []byte(newC)),
			"time": now.UTC().Format(time.RFC3339Nano), "kind": "source_change", "tenant": tenant,
			"repo": p.Repo, "ref": ref, "old_commit": oldC, "new_commit": newC, "action": action,
			"login": p.Login, "protocol": p.Protocol,
		}
		for k, v := range map[string]string{"app": app, "ip": p.IP, "user_agent": p.UserAgent} {
			if v != "" {
				ev[k] = v
			}
		}
		if p.Port != 0 {
			ev["port"] = p.Port
		}
		b, err := json.Marshal(ev)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, sc.Err()
}

func newHookCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "hook", Short: "Git server hooks"}
	var tenant, app, repo string
	pr := &cobra.Command{
		Use:   "git-post-receive",
		Short: "Record a push: reads post-receive lines on stdin and sends source_change events",
		Long: `Install as (or call from) a git post-receive hook. Each stdin line
"<old> <new> <ref>" becomes one source_change event: create when <old> is all
zeros, delete when <new> is, modify otherwise. Who pushed comes from the
environment the git server sets (see docs/EVENTS.md): CUSTODY_PUSH_LOGIN,
CUSTODY_PUSH_IP, CUSTODY_PUSH_USER_AGENT, CUSTODY_PUSH_PROTOCOL, CUSTODY_REPO,
CUSTODY_TENANT, CUSTODY_APP, else GitLab's GL_*, Gitea's GITEA_*, CGI's
REMOTE_ADDR/REMOTE_USER/HTTP_USER_AGENT and OpenSSH's SSH_CONNECTION.
Events Kafka does not take wait in agent.outbox_dir; the push is never
blocked for more than a few seconds.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := setup(cmd, g, sections["hook"])
			if err != nil {
				return err
			}
			p := readPushEnv(os.Getenv)
			if repo != "" {
				p.Repo = repo
			}
			if tenant == "" {
				tenant = os.Getenv("CUSTODY_TENANT")
			}
			if app == "" {
				app = os.Getenv("CUSTODY_APP")
			}
			lines, err := pushEvents(cmd.InOrStdin(), time.Now(), tenant, app, p)
			if err != nil {
				return err
			}
			o := senderOptions(cfg, "git-hook@"+cfg.Agent.Name)
			var recs []ingest.Record
			for _, l := range lines {
				e, err := event.Decode(l, o)
				if err != nil {
					return fmt.Errorf("cannot record push: %v (set CUSTODY_TENANT, CUSTODY_REPO and the pusher's login; see custody hook git-post-receive --help)", err)
				}
				recs = append(recs, ingest.RecordOf(e))
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			if _, err := submitOutbox(ctx, cfg, log, recs); err != nil {
				return fmt.Errorf("push of %d refs not recorded: %w", len(recs), err)
			}
			return nil
		},
	}
	pr.Flags().StringVar(&tenant, "tenant", "", "tenant (default $CUSTODY_TENANT)")
	pr.Flags().StringVar(&app, "app", "", "application (default $CUSTODY_APP)")
	pr.Flags().StringVar(&repo, "repo", "", "repository (default from the environment)")
	c.AddCommand(pr)
	return c
}
