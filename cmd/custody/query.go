package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/hold"
	"github.com/custodylog/custody/internal/announce"
	"github.com/custodylog/custody/internal/config"
	"github.com/custodylog/custody/query"
)

type queryFlags struct {
	from, to, ip, login, kind, tenant, app, repo, session string
	limit                                                 int
	format, purpose, operator, caseRef                    string
	strict, local                                         bool
	server, tokenFile, caFile                             string
}

func newQueryCmd(g *globals) *cobra.Command {
	var q queryFlags
	c := &cobra.Command{
		Use:   "query",
		Short: "Search the archive by time range, IP or CIDR, login, kind, tenant, app, repo or session",
		Long: `Asks custody serve (--server URL or CUSTODY_SERVER; the token from
--token-file or CUSTODY_TOKEN), which authenticates, checks the role, the
tenant scope and the case, records the access in Kafka before reading, and
streams the matching events in event-time order, each (tenant, event ID)
once. Every query names an open --case and a --purpose.

--local is break-glass: it reads the archive directly with the private
keyring (crypto section), and first writes the same access_audit event to
Kafka, synchronously; if Kafka does not acknowledge it, nothing is read.

Unreadable segments (missing key, tampered, truncated) are reported and
skipped; the command then exits 1. --strict (--local) stops at the first.`,
		Example: `  custody query --server https://custody.internal:8480 --case LE-2026-114 --from 2026-11-22 --to 2026-11-29 --ip 203.0.113.7 --kind login --purpose "preservation order 114"
  custody query --local --from 2026-11-03 --to 2026-11-03 --repo acme/shop --kind source_change --format table --purpose "incident 77, serve down"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runQuery(cmd, g, q) },
	}
	f := c.Flags()
	q.addFilters(f)
	f.IntVar(&q.limit, "limit", 0, "stop after this many events (0: all)")
	f.StringVar(&q.format, "format", "jsonl", "jsonl (events as stored), csv or table")
	f.StringVar(&q.purpose, "purpose", "", "case reference or legal basis (required; recorded)")
	f.StringVar(&q.operator, "operator", "", "who is asking (default: the OS user)")
	f.BoolVar(&q.strict, "strict", false, "stop at the first unreadable segment (--local)")
	f.StringVar(&q.caseRef, "case", "", "the open case this read is for (required with --server)")
	f.StringVar(&q.server, "server", "", "custody serve's URL (default $CUSTODY_SERVER)")
	f.StringVar(&q.tokenFile, "token-file", "", "file holding the API token (default: $CUSTODY_TOKEN)")
	f.StringVar(&q.caFile, "ca-file", "", "PEM authorities that sign custody serve's certificate (default: the system's)")
	f.BoolVar(&q.local, "local", false, "break-glass: read the archive directly with the private keyring")
	return c
}

// addFilters adds the range and filter flags queries and exports share.
func (q *queryFlags) addFilters(f *pflag.FlagSet) {
	f.StringVar(&q.from, "from", "", "start, inclusive: RFC 3339 or YYYY-MM-DD")
	f.StringVar(&q.to, "to", "", "end, exclusive: RFC 3339, or YYYY-MM-DD meaning the end of that day")
	f.StringVar(&q.ip, "ip", "", "an address or a CIDR prefix (IPv4 or IPv6)")
	f.StringVar(&q.login, "login", "", "login name or pseudonym")
	f.StringVar(&q.kind, "kind", "", "connection, login, source_change, activity or access_audit")
	f.StringVar(&q.tenant, "tenant", "", "tenant")
	f.StringVar(&q.app, "app", "", "application")
	f.StringVar(&q.repo, "repo", "", "repository")
	f.StringVar(&q.session, "session", "", "session identifier")
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
	if q.server == "" {
		q.server = os.Getenv("CUSTODY_SERVER")
	}
	switch {
	case q.server != "" && q.local:
		return fmt.Errorf("--server and --local exclude each other")
	case q.server != "":
		return runRemoteQuery(cmd, q)
	case !q.local:
		return fmt.Errorf("custody query asks custody serve: give --server URL (or set CUSTODY_SERVER); --local reads the archive directly, for break-glass, with the private keyring")
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
	if err := recordAccess(ctx, cfg, q); err != nil {
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

// recordAccess writes the access_audit event of a --local query to Kafka
// and returns once Kafka has acknowledged it (acks=all): no outbox, so no
// read happens unrecorded.
func recordAccess(ctx context.Context, cfg *config.Config, q queryFlags) error {
	op := q.operator
	if op == "" {
		op = osUser()
	}
	filters := map[string]any{"from": q.from, "to": q.to}
	for k, v := range map[string]string{"ip": q.ip, "login": q.login, "kind": q.kind, "tenant": q.tenant, "app": q.app, "repo": q.repo, "session": q.session} {
		if v != "" {
			filters[k] = v
		}
	}
	kc, err := cfg.Kafka.NewClient()
	if err != nil {
		return err
	}
	defer kc.Close()
	host, _ := os.Hostname()
	ann := announce.NewKafka(kc, cfg.Retention.DefaultClass, "query@"+host)
	defer ann.Close()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	now := time.Now().UTC()
	return ann.Announce(ctx, announce.Event{Kind: event.KindAccessAudit, Action: "query", Time: now, IDParts: []string{"access", "local", op, now.Format(time.RFC3339Nano)},
		Login: op, Purpose: q.purpose, Attrs: map[string]any{"phase": "request", "mode": "local", "case": q.caseRef, "filters": filters, "limit": q.limit}})
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
