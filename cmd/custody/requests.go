package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodylog/custody/serve"
)

func newRequestsCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "requests",
		Short: "The rights-request register, through custody serve (role legal; auditors list): open, reply, close, list",
		Long: `Records the requests people make under their data-protection rights
(access, rectification, erasure, objection, portability, limitation): the
subject, the right, when it was received and whether the requester's
identity was verified; then the reply and the closure. Each step is an
event in the events topic. A request is deleted a year after its reply
(custody retention run). Answer access and portability with custody
export subject. See docs/EXPORTS.md §7.`,
	}
	c.AddCommand(newRequestsOpenCmd(), newRequestsReplyCmd(), newRequestsCloseCmd(), newRequestsListCmd())
	return c
}

func printRights(cmd *cobra.Command, rr *serve.RightsRequest) {
	b, _ := json.MarshalIndent(rr, "", "  ")
	fmt.Fprintln(cmd.OutOrStdout(), string(b))
}

func (c *api) rights(cmd *cobra.Command, method, path string, body any, want int) (*serve.RightsRequest, error) {
	resp, err := c.do(cmd, method, path, body, want)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var rr serve.RightsRequest
	if err := json.NewDecoder(resp.Body).Decode(&rr); err != nil {
		return nil, fmt.Errorf("custody serve's answer: %w", err)
	}
	return &rr, nil
}

func newRequestsOpenCmd() *cobra.Command {
	var a apiFlags
	var b serve.RightsRequestBody
	c := &cobra.Command{
		Use:     "open --server URL (--login L | --tenant T) --right RIGHT --received DATE [--verified --verified-by HOW]",
		Short:   "Record a rights request",
		Example: `  custody requests open --server https://custody.internal:8480 --login alice --right access --received 2026-11-28 --verified --verified-by "ID card at the desk"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.open()
			if err != nil {
				return err
			}
			rr, err := c.rights(cmd, http.MethodPost, "/v1/requests", b, http.StatusCreated)
			if err != nil {
				return err
			}
			printRights(cmd, rr)
			return nil
		},
	}
	a.add(c)
	f := c.Flags()
	f.StringVar(&b.SubjectLogin, "login", "", "the subject's login")
	f.StringVar(&b.SubjectTenant, "tenant", "", "the subject tenant (an organisation's account)")
	f.StringVar(&b.Right, "right", "", "access, rectification, erasure, objection, portability or limitation")
	f.StringVar(&b.ReceivedAt, "received", time.Now().UTC().Format("2006-01-02"), "when the request was received (RFC 3339 or YYYY-MM-DD)")
	f.BoolVar(&b.IdentityVerified, "verified", false, "the requester's identity was verified")
	f.StringVar(&b.VerifiedBy, "verified-by", "", "how it was verified")
	return c
}

func newRequestsReplyCmd() *cobra.Command {
	var a apiFlags
	var b serve.ReplyBody
	c := &cobra.Command{
		Use:   "reply REQUEST-ID --server URL --outcome O [--answer TEXT]",
		Short: "Record the reply (erasure and objection without --answer get the legal obligation and the date the data is gone)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.open()
			if err != nil {
				return err
			}
			rr, err := c.rights(cmd, http.MethodPost, "/v1/requests/"+url.PathEscape(args[0])+"/reply", b, http.StatusOK)
			if err != nil {
				return err
			}
			printRights(cmd, rr)
			return nil
		},
	}
	a.add(c)
	c.Flags().StringVar(&b.Outcome, "outcome", "", "granted, partly granted, refused, …")
	c.Flags().StringVar(&b.Answer, "answer", "", "the text of the reply")
	return c
}

func newRequestsCloseCmd() *cobra.Command {
	var a apiFlags
	c := &cobra.Command{
		Use:   "close REQUEST-ID --server URL",
		Short: "Close a replied request",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.open()
			if err != nil {
				return err
			}
			rr, err := c.rights(cmd, http.MethodPost, "/v1/requests/"+url.PathEscape(args[0])+"/close", nil, http.StatusOK)
			if err != nil {
				return err
			}
			printRights(cmd, rr)
			return nil
		},
	}
	a.add(c)
	return c
}

func newRequestsListCmd() *cobra.Command {
	var a apiFlags
	var format string
	c := &cobra.Command{
		Use:   "list --server URL [--format table|json]",
		Short: "The register",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.open()
			if err != nil {
				return err
			}
			resp, err := c.do(cmd, http.MethodGet, "/v1/requests", nil, http.StatusOK)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var reg struct {
				Requests []serve.RightsRequest `json:"requests"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&reg); err != nil {
				return fmt.Errorf("custody serve's answer: %w", err)
			}
			if format == "json" {
				b, _ := json.MarshalIndent(reg, "", "  ")
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REQUEST\tSUBJECT\tRIGHT\tRECEIVED\tVERIFIED\tREPLIED\tOUTCOME\tCLOSED\tDELETE AFTER")
			for _, r := range reg.Requests {
				subject := "login " + r.SubjectLogin
				if r.SubjectTenant != "" {
					subject = "tenant " + r.SubjectTenant
				}
				replied, outcome, del, closed := "—", "—", "—", "—"
				if r.Reply != nil {
					replied, outcome, del = r.Reply.At.Format("2006-01-02"), r.Reply.Outcome, r.DeleteAfter.Format("2006-01-02")
				}
				if !r.ClosedAt.IsZero() {
					closed = r.ClosedAt.Format("2006-01-02")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%s\t%s\t%s\t%s\n", r.ID, subject, r.Right, r.ReceivedAt.Format("2006-01-02"), r.IdentityVerified, replied, strings.ReplaceAll(outcome, "\t", " "), closed, del)
			}
			return tw.Flush()
		},
	}
	a.add(c)
	c.Flags().StringVar(&format, "format", "table", "table or json")
	return c
}

func newExportSubjectCmd() *cobra.Command {
	var a apiFlags
	var request, output string
	var noWait bool
	c := &cobra.Command{
		Use:   "subject --server URL --request REQUEST-ID [--output FILE]",
		Short: "Export every event about a rights request's subject (access, portability), signed; wait and download it",
		Long: `For a verified access or portability request that is not closed: every
event whose login (or tenant) is the request's subject, of every class and
kind but the access log, over the whole retention window, as a package
like a disclosure's (docs/EXPORTS.md) whose cover page speaks to the person:
what is kept, why, and until when.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.open()
			if err != nil {
				return err
			}
			e, err := c.export(cmd, http.MethodPost, "/v1/subject-exports", serve.SubjectExportRequest{Request: request}, http.StatusCreated)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "export %s created for rights request %s: %s\n", e.ID, e.RightsRequest, e.Status)
			if noWait || e.Status == serve.ExportPending {
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
	c.Flags().StringVar(&request, "request", "", "the rights request (required)")
	c.Flags().StringVar(&output, "output", "", "where to save the package (default <export ID>.zip)")
	c.Flags().BoolVar(&noWait, "no-wait", false, "print the export ID and return at once")
	return c
}
