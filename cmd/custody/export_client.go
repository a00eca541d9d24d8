package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodylog/custody/serve"
)

// apiFlags reach custody serve.
type apiFlags struct{ server, tokenFile, caFile string }

func (a *apiFlags) add(c *cobra.Command) {
	f := c.Flags()
	f.StringVar(&a.server, "server", "", "custody serve's URL (default $CUSTODY_SERVER)")
	f.StringVar(&a.tokenFile, "token-file", "", "file holding the API token (default $"+TokenEnv+")")
	f.StringVar(&a.caFile, "ca-file", "", "PEM authorities to trust for the server's certificate (default: the system's)")
}

// api is a client of custody serve.
type api struct {
	base, token string
	client      *http.Client
}

func (a *apiFlags) open() (*api, error) {
	if a.server == "" {
		a.server = os.Getenv("CUSTODY_SERVER")
	}
	if a.server == "" {
		return nil, errors.New("--server URL (or CUSTODY_SERVER) is required")
	}
	tok, err := readToken(a.tokenFile)
	if err != nil {
		return nil, err
	}
	cl, err := apiClient(a.caFile)
	if err != nil {
		return nil, err
	}
	return &api{base: strings.TrimSuffix(a.server, "/"), token: tok, client: cl}, nil
}

// do sends a request; an answer of want is returned open, any other is an
// error naming custody serve's reason.
func (c *api) do(cmd *cobra.Command, method, path string, body any, want int) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(cmd.Context(), method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("--server: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach custody serve: %w", err)
	}
	if resp.StatusCode != want {
		defer resp.Body.Close()
		return nil, apiError(resp)
	}
	return resp, nil
}

func (c *api) export(cmd *cobra.Command, method, path string, body any, want int) (*serve.Export, error) {
	resp, err := c.do(cmd, method, path, body, want)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var e serve.Export
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		return nil, fmt.Errorf("custody serve's answer: %w", err)
	}
	return &e, nil
}

func newExportCreateCmd() *cobra.Command {
	var a apiFlags
	var q queryFlags
	var authority, legalBasis, reference, output string
	var noWait bool
	c := &cobra.Command{
		Use:   "create --server URL --case ID --purpose P --from T --to T FILTERS",
		Short: "Ask custody serve for a disclosure package (role legal); wait for it and download it",
		Long: `Creates an export of the events the filters select (at least one of --ip,
--login, --kind, --tenant, --app, --repo, --session) for an open case.
custody serve records it once Kafka has acknowledged the audit event and
runs it in the background; with serve.exports.approvals 2 it first waits
for a second legal identity (custody export approve).

Unless --no-wait, the command waits for the package (progress on a
terminal), downloads it to --output (default <export ID>.zip) and checks
the SHA-256 custody serve recorded. Verify it with custody export verify.`,
		Example: `  custody export create --server https://custody.internal:8480 --case LE-2026-114 --purpose "requisition R/2026/881" \
    --from 2026-11-01 --to 2026-11-28 --ip 203.0.113.7 --authority "Tribunal judiciaire de Paris" --legal-basis "art. 60-1 CPP"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.open()
			if err != nil {
				return err
			}
			req := serve.ExportRequest{QueryRequest: serve.QueryRequest{Case: q.caseRef, Purpose: q.purpose, From: q.from, To: q.to, IP: q.ip, Login: q.login,
				Kind: q.kind, Tenant: q.tenant, App: q.app, Repo: q.repo, Session: q.session}, Authority: authority, LegalBasis: legalBasis, Reference: reference}
			e, err := c.export(cmd, http.MethodPost, "/v1/exports", req, http.StatusCreated)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "export %s created for case %s: %s\n", e.ID, e.Case, e.Status)
			if noWait {
				fmt.Fprintln(cmd.OutOrStdout(), e.ID)
				return nil
			}
			if e.Status == serve.ExportPending {
				fmt.Fprintf(cmd.ErrOrStderr(), "it needs %d approvals in all: custody export approve %s, by another legal identity\n", e.ApprovalsNeeded, e.ID)
				fmt.Fprintln(cmd.OutOrStdout(), e.ID)
				return nil
			}
			if e, err = waitExport(cmd, c, e.ID); err != nil {
				return err
			}
			return download(cmd, c, e, output)
		},
	}
	a.add(c)
	f := c.Flags()
	f.StringVar(&q.caseRef, "case", "", "the open case the export answers (required)")
	f.StringVar(&q.purpose, "purpose", "", "why (required; recorded and printed on the package)")
	q.addFilters(f)
	f.StringVar(&authority, "authority", "", "the requesting authority, for the cover page")
	f.StringVar(&legalBasis, "legal-basis", "", "the legal basis of the request")
	f.StringVar(&reference, "reference", "", "the authority's reference")
	f.StringVar(&output, "output", "", "where to save the package (default <export ID>.zip)")
	f.BoolVar(&noWait, "no-wait", false, "print the export ID and return at once")
	return c
}

// waitExport polls until the export has a result; on a terminal it shows
// the progress.
func waitExport(cmd *cobra.Command, c *api, id string) (*serve.Export, error) {
	tty := isTerminal(cmd.ErrOrStderr())
	for {
		e, err := c.export(cmd, http.MethodGet, "/v1/exports/"+url.PathEscape(id), nil, http.StatusOK)
		if err != nil {
			return nil, err
		}
		if tty && e.Progress != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "\r%s: %d events so far", e.Status, e.Progress.Events)
		}
		if e.Result != nil {
			if tty {
				fmt.Fprintln(cmd.ErrOrStderr())
			}
			if e.Status != serve.ExportReady {
				return nil, fmt.Errorf("export %s failed: %s", e.ID, e.Result.Error)
			}
			return e, nil
		}
		if e.Status == serve.ExportPending {
			return nil, fmt.Errorf("export %s waits for approval", e.ID)
		}
		select {
		case <-cmd.Context().Done():
			return nil, cmd.Context().Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// download saves the package to output, atomically, checking its SHA-256
// against the one custody serve recorded.
func download(cmd *cobra.Command, c *api, e *serve.Export, output string) error {
	if output == "" {
		output = e.ID + ".zip"
	}
	resp, err := c.do(cmd, http.MethodGet, "/v1/exports/"+url.PathEscape(e.ID)+"/package", nil, http.StatusOK)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Streamed to a temporary file beside output, hashed on the way, and
	// renamed only once the hash matches: a package can be gigabytes.
	tmp, err := os.CreateTemp(filepath.Dir(output), ".custody-download-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), resp.Body)
	if err != nil {
		return fmt.Errorf("download of %s cut short after %d bytes: %w", e.ID, n, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != e.Result.SHA256 {
		return fmt.Errorf("the package downloaded has SHA-256 %s; custody serve recorded %s", got, e.Result.SHA256)
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), output); err != nil {
		return err
	}
	abs, _ := filepath.Abs(output)
	fmt.Fprintf(cmd.ErrOrStderr(), "%d events, %d bytes, SHA-256 %s\n", e.Result.Events, n, e.Result.SHA256)
	fmt.Fprintln(cmd.OutOrStdout(), abs)
	return nil
}

func newExportApproveCmd() *cobra.Command {
	var a apiFlags
	c := &cobra.Command{
		Use:   "approve EXPORT-ID --server URL",
		Short: "Approve an export another legal identity requested (the four-eyes rule)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.open()
			if err != nil {
				return err
			}
			e, err := c.export(cmd, http.MethodPost, "/v1/exports/"+url.PathEscape(args[0])+"/approve", nil, http.StatusOK)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "export %s: %s (%d of %d approvals)\n", e.ID, e.Status, 1+len(e.Approvals), e.ApprovalsNeeded)
			return nil
		},
	}
	a.add(c)
	return c
}

func newExportDownloadCmd() *cobra.Command {
	var a apiFlags
	var output string
	c := &cobra.Command{
		Use:   "download EXPORT-ID --server URL [--output FILE]",
		Short: "Wait for an export's package and download it (recorded in the disclosure register)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.open()
			if err != nil {
				return err
			}
			e, err := waitExport(cmd, c, args[0])
			if err != nil {
				return err
			}
			return download(cmd, c, e, output)
		},
	}
	a.add(c)
	c.Flags().StringVar(&output, "output", "", "where to save the package (default <export ID>.zip)")
	return c
}

func newExportListCmd() *cobra.Command {
	var a apiFlags
	var caseRef, format string
	c := &cobra.Command{
		Use:   "list --server URL [--case ID] [--format table|json]",
		Short: "The disclosure register: every export, its approvals and downloads (roles legal and auditor)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.open()
			if err != nil {
				return err
			}
			path := "/v1/exports"
			if caseRef != "" {
				path += "?case=" + url.QueryEscape(caseRef)
			}
			resp, err := c.do(cmd, http.MethodGet, path, nil, http.StatusOK)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var reg struct {
				Exports []serve.Export `json:"exports"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&reg); err != nil {
				return fmt.Errorf("custody serve's answer: %w", err)
			}
			out := cmd.OutOrStdout()
			if format == "json" {
				b, _ := json.MarshalIndent(reg, "", "  ")
				fmt.Fprintln(out, string(b))
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "EXPORT\tCASE\tSTATUS\tREQUESTED\tBY\tAPPROVED BY\tEVENTS\tDOWNLOADS")
			for _, e := range reg.Exports {
				var by []string
				for _, ap := range e.Approvals {
					by = append(by, ap.By)
				}
				events := "—"
				if e.Result != nil {
					events = fmt.Sprint(e.Result.Events)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", e.ID, e.Case, e.Status, e.RequestedAt.Format(time.RFC3339), e.RequestedBy, orDash(strings.Join(by, ",")), events, len(e.Downloads))
			}
			return tw.Flush()
		},
	}
	a.add(c)
	c.Flags().StringVar(&caseRef, "case", "", "only this case's exports")
	c.Flags().StringVar(&format, "format", "table", "table or json")
	return c
}
