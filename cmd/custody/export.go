package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/export"
)

func newExportCmd(g *globals) *cobra.Command {
	// `custody export --server URL --case ID …` is `custody export create`:
	// the command people reach for first.
	c := newExportCreateCmd()
	create := c.RunE
	c.Use = "export [--server URL --case ID --purpose P --from T --to T FILTERS] | export SUBCOMMAND"
	c.Short = "Disclosure packages: create them through custody serve (as export create), verify them anywhere (docs/EXPORTS.md)"
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if cmd.Flags().NFlag() == 0 {
			return cmd.Help()
		}
		return create(cmd, args)
	}
	c.AddCommand(newExportCreateCmd(), newExportSubjectCmd(), newExportApproveCmd(), newExportDownloadCmd(), newExportListCmd(), newExportVerifyCmd(g), newExportPubkeyCmd(g))
	return c
}

func newExportVerifyCmd(g *globals) *cobra.Command {
	var pubkey, format string
	var against bool
	c := &cobra.Command{
		Use:   "verify PACKAGE.zip --pubkey FILE [--against-archive] [--format text|json]",
		Short: "Check a disclosure package offline: its signature, every file's hash, no file added or removed",
		Long: `Checks that manifest.sig is an Ed25519 signature over manifest.json by a
key in --pubkey (PEM, as custody export pubkey writes it, or a public
keyring), that every file the manifest lists is in the package with its
size and SHA-256, and that the package holds no other file. It needs no
configuration and no network.

With --against-archive it also re-checks the provenance against the live
bucket (the s3, crypto and retention sections): every segment the events
came from is there with the SHA-256 recorded, listed with it by a signed
chain checkpoint that is there with its own. Segments gone past their
retention are counted, not findings.

Each finding names the file and what is wrong; the exit status is 1 on any.`,
		Example: `  custody export verify exp-0001.zip --pubkey custody-export.pem`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if pubkey == "" {
				return errors.New("--pubkey FILE is required: the key the package must be signed with")
			}
			if format != "text" && format != "json" {
				return fmt.Errorf("--format %q: want text or json", format)
			}
			keys, err := export.LoadKeys(pubkey)
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			res, err := export.Verify(f, fi.Size(), keys)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			var prov *export.ProvenanceReport
			if against && res.Manifest != nil {
				cfg, err := loadValid(cmd, g, sections["export verify --against-archive"])
				if err != nil {
					return err
				}
				trusted, err := keyring.LoadPublic(cfg.Crypto.PublicKeyringFile)
				if err != nil {
					return err
				}
				st, err := store.New(cfg.S3)
				if err != nil {
					return err
				}
				if prov, err = export.CheckProvenance(cmd.Context(), st, trusted, cfg.Retention, res.Manifest, time.Now()); err != nil {
					return err
				}
				res.Findings = append(res.Findings, prov.Findings...)
			}
			out := cmd.OutOrStdout()
			if format == "json" {
				if res.Findings == nil {
					res.Findings = []export.Finding{}
				}
				b, _ := json.MarshalIndent(struct {
					*export.Result
					Provenance *export.ProvenanceReport `json:"provenance,omitempty"`
				}{res, prov}, "", "  ")
				fmt.Fprintln(out, string(b))
			} else {
				for _, f := range res.Findings {
					fmt.Fprintln(out, f)
				}
				if m := res.Manifest; m != nil {
					fmt.Fprintf(out, "%s %s: case %s, %d events, %d files, %d source segments, signed by %s\n", m.Kind, m.ID, m.Request.Case, m.Counts.Events, len(m.Files), len(m.Provenance), orDash(res.Signer))
				}
				if prov != nil {
					fmt.Fprintf(out, "against the archive: %d segments found as recorded, %d gone past retention\n", prov.Segments, prov.Expired)
				}
				fmt.Fprintf(out, "%d findings\n", len(res.Findings))
			}
			if n := len(res.Findings); n > 0 {
				cmd.SilenceUsage = true
				return fmt.Errorf("%d findings", n)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&pubkey, "pubkey", "", "the trusted signing key(s): PEM (custody export pubkey) or a public keyring")
	f.BoolVar(&against, "against-archive", false, "also re-check the provenance against the bucket (needs the s3, crypto and retention sections)")
	f.StringVar(&format, "format", "text", "text or json")
	return c
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func newExportPubkeyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "pubkey",
		Short: "Print the public half of the signing key custody serve signs packages with, as PEM, for recipients",
		Long: `Prints the Ed25519 public key of crypto.signing_key_file as a PEM PUBLIC
KEY block (after a line naming it and its fingerprint). Hand it to
recipients with the package, or better, publish it where they can fetch it
independently: custody export verify --pubkey and openssl both read it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadValid(cmd, g, sections["export pubkey"])
			if err != nil {
				return err
			}
			sk, err := keyring.LoadSigningKey(cfg.Crypto.SigningKeyFile)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(export.PEM(sk.ID, sk.Public().Public))
			return err
		},
	}
}
