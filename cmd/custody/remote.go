package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/custodylog/custody/serve"
)

// TokenEnv holds the API token of custody query --server.
const TokenEnv = "CUSTODY_TOKEN"

// runRemoteQuery asks custody serve and prints what it streams, in the
// chosen format; the trailer line says what could not be read.
func runRemoteQuery(cmd *cobra.Command, q queryFlags) error {
	if strings.TrimSpace(q.caseRef) == "" {
		return fmt.Errorf("--case is required: every read names an open case")
	}
	tok, err := readToken(q.tokenFile)
	if err != nil {
		return err
	}
	client, err := apiClient(q.caFile)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(serve.QueryRequest{Case: q.caseRef, Purpose: q.purpose, From: q.from, To: q.to, IP: q.ip, Login: q.login, Kind: q.kind,
		Tenant: q.tenant, App: q.app, Repo: q.repo, Session: q.session, Limit: q.limit, Progress: isTerminal(cmd.ErrOrStderr())})
	req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, strings.TrimSuffix(q.server, "/")+"/v1/query", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("--server: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	return streamAnswer(cmd, client, req, q.format, "custody query")
}

// streamAnswer sends req to custody serve and prints the events it
// streams in format, then reports what the trailer line says: unreadable
// segments (exit 1), a truncated answer, a query stopped early.
func streamAnswer(cmd *cobra.Command, client *http.Client, req *http.Request, format, who string) error {
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach custody serve: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return apiError(resp)
	}
	out := bufio.NewWriterSize(cmd.OutOrStdout(), 256<<10)
	emit, finish := formatter(format, out)
	errw := cmd.ErrOrStderr()
	tty := isTerminal(errw)
	br := bufio.NewReaderSize(resp.Body, 1<<20)
	var trailer *serve.Trailer
	var n, read int64
	progressed := false // the server sends progress lines: show those
	for {
		line, err := br.ReadBytes('\n')
		read += int64(len(line))
		if l := bytes.TrimSuffix(line, []byte("\n")); len(l) > 0 {
			if bytes.HasPrefix(l, []byte(`{"progress":`)) {
				// Asked for on a TTY only: the same line as --local's.
				var p struct {
					Progress serve.Progress `json:"progress"`
				}
				if tty && json.Unmarshal(l, &p) == nil {
					progressed = true
					fmt.Fprintf(errw, "\rsegments %d/%d scanned, %d skipped by index; %d events matched; %s read   ",
						p.Progress.Scanned, p.Progress.Segments, p.Progress.Pruned, p.Progress.Events, humanize.IBytes(uint64(p.Progress.Bytes)))
				}
			} else if bytes.HasPrefix(l, []byte(`{"trailer":`)) {
				var t struct {
					Trailer serve.Trailer `json:"trailer"`
				}
				if err := json.Unmarshal(l, &t); err != nil {
					return fmt.Errorf("custody serve sent a bad trailer: %v", err)
				}
				trailer = &t.Trailer
			} else {
				if err := emit(l); err != nil {
					return err
				}
				n++
				if tty && !progressed && n%1000 == 0 {
					fmt.Fprintf(errw, "\r%d events, %s received   ", n, humanize.IBytes(uint64(read)))
				}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("the answer was cut: %w (results are incomplete)", err)
		}
	}
	if err := finish(); err != nil {
		return err
	}
	if err := out.Flush(); err != nil {
		return err
	}
	if tty {
		fmt.Fprintln(errw)
	}
	if trailer == nil {
		return fmt.Errorf("the answer ended without its trailer: results are incomplete")
	}
	for _, f := range trailer.Failed {
		fmt.Fprintf(errw, "%s: cannot read %s: %s\n", who, f.Segment, f.Error)
	}
	if trailer.Truncated {
		fmt.Fprintf(errw, "%s: stopped at %d events (the limit); request %s\n", who, trailer.Events, trailer.RequestID)
	}
	if trailer.Error != "" {
		return fmt.Errorf("custody serve stopped (request %s): %s", trailer.RequestID, trailer.Error)
	}
	if len(trailer.Failed) > 0 {
		fmt.Fprintf(errw, "%s: %d of %d segments could not be read; the results above lack their events (request %s)\n", who, len(trailer.Failed), trailer.Segments, trailer.RequestID)
		return exitError{1}
	}
	return nil
}

// newAccessLogCmd is the access log's client.
func newAccessLogCmd() *cobra.Command {
	var server, tokenFile, caFile, from, to, login, caseRef, format string
	var limit int
	c := &cobra.Command{
		Use:   "access-log --server URL --from T --to T [--login L] [--case ID]",
		Short: "Who read what, for which case: the access_audit events, from custody serve (role auditor)",
		Long: `Asks custody serve for the access log of a range: every query's request
and outcome events (who, role, case, purpose, filters, client; events
returned, segments read, errors), from the archive and, not yet archived,
from Kafka, each once, in time order. Reading the access log is itself
recorded. See docs/SERVE.md §6.`,
		Example: `  custody access-log --server https://custody.internal:8480 --from 2026-11-01 --to 2026-11-29 --case LE-2026-114 --format table`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if server == "" {
				server = os.Getenv("CUSTODY_SERVER")
			}
			if server == "" {
				return fmt.Errorf("--server URL (or CUSTODY_SERVER) is required")
			}
			if from == "" || to == "" {
				return fmt.Errorf("--from and --to are required")
			}
			switch format {
			case "jsonl", "csv", "table":
			default:
				return fmt.Errorf("--format %q is not jsonl, csv or table", format)
			}
			tok, err := readToken(tokenFile)
			if err != nil {
				return err
			}
			client, err := apiClient(caFile)
			if err != nil {
				return err
			}
			v := url.Values{"from": {from}, "to": {to}}
			for k, x := range map[string]string{"login": login, "case": caseRef} {
				if x != "" {
					v.Set(k, x)
				}
			}
			if limit > 0 {
				v.Set("limit", strconv.Itoa(limit))
			}
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, strings.TrimSuffix(server, "/")+"/v1/access-log?"+v.Encode(), nil)
			if err != nil {
				return fmt.Errorf("--server: %v", err)
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			return streamAnswer(cmd, client, req, format, "custody access-log")
		},
	}
	f := c.Flags()
	f.StringVar(&server, "server", "", "custody serve's URL (default $CUSTODY_SERVER)")
	f.StringVar(&tokenFile, "token-file", "", "file holding the API token (default: $CUSTODY_TOKEN)")
	f.StringVar(&caFile, "ca-file", "", "PEM authorities that sign custody serve's certificate (default: the system's)")
	f.StringVar(&from, "from", "", "start, inclusive: RFC 3339 or YYYY-MM-DD")
	f.StringVar(&to, "to", "", "end, exclusive: RFC 3339, or YYYY-MM-DD meaning the end of that day")
	f.StringVar(&login, "login", "", "only the accesses of this identity")
	f.StringVar(&caseRef, "case", "", "only the accesses for this case")
	f.IntVar(&limit, "limit", 0, "at most this many events (default 1,000)")
	f.StringVar(&format, "format", "jsonl", "jsonl, csv or table")
	return c
}

// readToken reads the API token from the file, else from CUSTODY_TOKEN.
func readToken(file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
		return "", fmt.Errorf("--token-file %s is empty", file)
	}
	if t := strings.TrimSpace(os.Getenv(TokenEnv)); t != "" {
		return t, nil
	}
	return "", fmt.Errorf("no API token: give --token-file or set %s", TokenEnv)
}

// apiClient trusts the system's authorities, or those of caFile.
func apiClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr}, nil
}

// apiError turns an error answer into an error naming the status.
func apiError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return fmt.Errorf("custody serve: %s (HTTP %d)", e.Error, resp.StatusCode)
	}
	return fmt.Errorf("custody serve answered HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
}
