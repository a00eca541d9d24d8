package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/hold"
	"github.com/custodylog/custody/ingest"
	"github.com/custodylog/custody/internal/config"
	"github.com/custodylog/custody/internal/telemetry"
	"github.com/custodylog/custody/query"
)

type queryFlags struct {
	from, to, ip, login, kind, tenant, app, repo, session string
	limit                                                 int
	format, purpose, operator                             string
	strict                                                bool
}

func newQueryCmd(g *globals) *cobra.Command {
	var q queryFlags
	c := &cobra.Command{
		Use:   "query",
		Short: "Search the archive by time range, IP or CIDR, login, kind, tenant, app, repo or session",
		Long: `Lists the hour prefixes of the range, skips segments whose header and
keyed index rule them out, reads the rest in parallel, and streams the
matching events in event-time order, each (tenant, event ID) once.

Every query is itself recorded first, as an access_audit event with the
operator, the purpose and the filters; no purpose, no query.

Unreadable segments (missing key, tampered, truncated) are reported and
skipped; the command then exits 1. --strict stops at the first one.`,
		Example: `  custody query --from 2026-11-22 --to 2026-11-29 --ip 203.0.113.7 --kind login --purpose "case 2026-114"
  custody query --from 2026-11-03 --to 2026-11-03 --repo acme/shop --kind source_change --format table --purpose "incident 77"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runQuery(cmd, g, q) },
	}
	f := c.Flags()
	f.StringVar(&q.from, "from", "", "start, inclusive: RFC 3339 or YYYY-MM-DD")
	f.StringVar(&q.to, "to", "", "end, exclusive: RFC 3339, or YYYY-MM-DD meaning the end of that day")
	f.StringVar(&q.ip, "ip", "", "an address or a CIDR prefix (IPv4 or IPv6)")
	f.StringVar(&q.login, "login", "", "login name or pseudonym")
	f.StringVar(&q.kind, "kind", "", "connection, login, source_change, activity or access_audit")
	f.StringVar(&q.tenant, "tenant", "", "tenant")
	f.StringVar(&q.app, "app", "", "application")
	f.StringVar(&q.repo, "repo", "", "repository")
	f.StringVar(&q.session, "session", "", "session identifier")
	f.IntVar(&q.limit, "limit", 0, "stop after this many events (0: all)")
	f.StringVar(&q.format, "format", "jsonl", "jsonl (events as stored), csv or table")
	f.StringVar(&q.purpose, "purpose", "", "case reference or legal basis (required; recorded)")
	f.StringVar(&q.operator, "operator", "", "who is asking (default: the OS user)")
	f.BoolVar(&q.strict, "strict", false, "stop at the first unreadable segment")
	return c
}

func runQuery(cmd *cobra.Command, g *globals, q queryFlags) error {
	var f query.Filter
	var err error
	if q.from == "" || q.to == "" {
		return fmt.Errorf("--from and --to are required")
	}
	if f.From, err = query.ParseTime(q.from, false); err != nil {
		return fmt.Errorf("--from: %v", err)
	}
	if f.To, err = query.ParseTime(q.to, true); err != nil {
		return fmt.Errorf("--to: %v", err)
	}
	if q.ip != "" {
		p, err := query.ParseIP(q.ip)
		if err != nil {
			return fmt.Errorf("--ip: %v", err)
		}
		f.IP = &p
	}
	f.Login, f.Kind, f.Tenant, f.App, f.Repo, f.Session = q.login, q.kind, q.tenant, q.app, q.repo, q.session
	if err := f.Validate(); err != nil {
		return err
	}
	switch q.format {
	case "jsonl", "csv", "table":
	default:
		return fmt.Errorf("--format %q is not jsonl, csv or table", q.format)
	}
	if strings.TrimSpace(q.purpose) == "" {
		return fmt.Errorf("--purpose is required: every access to the archive records why")
	}
	cfg, err := loadValid(cmd, g, sections["query"])
	if err != nil {
		return err
	}
	keys, err := cfg.Crypto.LoadReadKeys()
	if err != nil {
		return err
	}
	st, err := store.New(cfg.S3)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if err := recordAccess(ctx, cfg, g, q); err != nil {
		return fmt.Errorf("cannot record this access, so the query does not run: %w", err)
	}
	eng := query.NewEngine(cfg.Query, st, keys, cfg.Retention.Names())
	eng.UseEscrow(hold.NewVault(st, keys.Holds, keys.Public))

	out := bufio.NewWriterSize(cmd.OutOrStdout(), 256<<10)
	emit, finish := formatter(q.format, out)
	opts := query.Options{Limit: q.limit, Strict: q.strict}
	errw := cmd.ErrOrStderr()
	tty := isTerminal(errw)
	if tty {
		opts.Progress = func(s query.Stats) {
			fmt.Fprintf(errw, "\rsegments %d/%d scanned, %d skipped by index; %d events matched; %s read   ",
				s.Scanned, s.Total, s.Pruned, s.Matched, humanize.IBytes(uint64(s.Bytes)))
		}
	}
	stats, runErr := eng.Run(ctx, f, opts, emit)
	if err := finish(); err != nil && runErr == nil {
		runErr = err
	}
	if err := out.Flush(); err != nil && runErr == nil {
		runErr = err
	}
	if tty {
		fmt.Fprintln(errw)
	}
	for _, fe := range stats.Failed {
		fmt.Fprintf(errw, "custody query: cannot read %v\n", fe.Err)
	}
	if runErr != nil {
		return runErr
	}
	if len(stats.Failed) > 0 {
		fmt.Fprintf(errw, "custody query: %d of %d segments could not be read; the results above lack their events\n", len(stats.Failed), stats.Total)
		return exitError{1}
	}
	return nil
}

// recordAccess writes the access_audit event before the query runs,
// through the outbox: to Kafka, or to the local spool if Kafka is down.
func recordAccess(ctx context.Context, cfg *config.Config, g *globals, q queryFlags) error {
	op := q.operator
	if op == "" {
		if u, err := user.Current(); err == nil {
			op = u.Username
		}
	}
	tenant := q.tenant
	if tenant == "" {
		tenant = "platform"
	}
	filters := map[string]string{"from": q.from, "to": q.to}
	for k, v := range map[string]string{"ip": q.ip, "login": q.login, "kind": q.kind, "app": q.app, "repo": q.repo, "session": q.session} {
		if v != "" {
			filters[k] = v
		}
	}
	ev := map[string]any{"kind": "access_audit", "tenant": tenant, "login": op, "action": "query", "purpose": q.purpose,
		"attrs": map[string]any{"filters": filters, "limit": q.limit}}
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	e, err := event.Decode(b, cfg.EventOptions("query@"+cfg.Agent.Name))
	if err != nil {
		return err
	}
	log, err := telemetry.NewLogger(g.logFormat, "error")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err = submitOutbox(ctx, cfg, log, []ingest.Record{ingest.RecordOf(e)})
	return err
}

var csvColumns = []string{"time", "id", "kind", "class", "tenant", "app", "ip", "port", "session", "login", "action", "protocol", "method", "path", "status", "repo", "ref", "old_commit", "new_commit", "user_agent", "purpose", "source"}

func csvRow(e *event.Event) []string {
	ip, port, status := "", "", ""
	if e.IP.IsValid() {
		ip = e.IP.String()
	}
	if e.Port != 0 {
		port = strconv.Itoa(int(e.Port))
	}
	if e.Status != 0 {
		status = strconv.Itoa(e.Status)
	}
	return []string{event.FormatTime(e.Time), e.ID, string(e.Kind), e.Class, e.Tenant, e.App, ip, port, e.Session, e.Login, e.Action,
		e.Protocol, e.Method, e.Path, status, e.Repo, e.Ref, e.OldCommit, e.NewCommit, e.UserAgent, e.Purpose, e.Source}
}

// formatter returns the per-event writer and a finisher for a format.
func formatter(format string, w io.Writer) (func([]byte) error, func() error) {
	switch format {
	case "csv":
		cw := csv.NewWriter(w)
		header := false
		return func(line []byte) error {
				if !header {
					header = true
					cw.Write(csvColumns)
				}
				e, err := event.Parse(line)
				if err != nil {
					return err
				}
				return cw.Write(csvRow(e))
			}, func() error {
				cw.Flush()
				return cw.Error()
			}
	case "table":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tKIND\tTENANT\tIP\tPORT\tLOGIN\tACTION\tDETAIL")
		return func(line []byte) error {
			e, err := event.Parse(line)
			if err != nil {
				return err
			}
			r := csvRow(e)
			detail := strings.TrimSpace(strings.Join([]string{e.Method, e.Path, r[14], e.Repo, e.Ref, e.Purpose}, " "))
			_, err = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r[0], r[2], r[4], r[6], r[7], r[9], r[10], detail)
			return err
		}, tw.Flush
	}
	return func(line []byte) error {
		if _, err := w.Write(line); err != nil {
			return err
		}
		_, err := w.Write([]byte{'\n'})
		return err
	}, func() error { return nil }
}

// isTerminal reports whether w is a character device (a TTY): progress is
// for people, not for pipes and files.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
