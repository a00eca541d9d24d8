package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodylog/custody/crypto/keyring"
)

func newKeysCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "keys", Short: "Manage the key-encryption keys (one per month of event time)"}

	// loadForWrite reads the keyring file for modification. The env form
	// (CUSTODY_KEYRING) cannot be written back, so it is refused here.
	loadForWrite := func(cmd *cobra.Command) (*keyring.Keyring, string, error) {
		cfg, err := loadValid(cmd, g, sections["keys"])
		if err != nil {
			return nil, "", err
		}
		if os.Getenv(keyring.EnvKeyring) != "" {
			return nil, "", fmt.Errorf("%s is set; keys generate and rotate write %s, so unset it first", keyring.EnvKeyring, cfg.Crypto.KeyringFile)
		}
		path := cfg.Crypto.KeyringFile
		kr, err := keyring.Load(path)
		if errors.Is(err, fs.ErrNotExist) {
			return keyring.New(), path, nil
		}
		return kr, path, err
	}

	var from, to string
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Create a first key for every month in a range that has none (default: 13 months back to 12 ahead)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kr, path, err := loadForWrite(cmd)
			if err != nil {
				return err
			}
			now := time.Now().UTC()
			if from == "" {
				from = now.AddDate(0, -13, 0).Format("2006-01")
			}
			if to == "" {
				to = now.AddDate(0, 12, 0).Format("2006-01")
			}
			added, err := kr.Generate(now, from, to)
			if err != nil {
				return err
			}
			if len(added) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: every month from %s to %s already has a key\n", path, from, to)
				return nil
			}
			if err := kr.Save(path); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: added %d keys, %s to %s\n", path, len(added), added[0], added[len(added)-1])
			return nil
		},
	}
	gen.Flags().StringVar(&from, "from", "", "first month, YYYY-MM")
	gen.Flags().StringVar(&to, "to", "", "last month, YYYY-MM")

	var month string
	rot := &cobra.Command{
		Use:   "rotate",
		Short: "Add a new key version for a month (default: the current month); older versions stay readable",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kr, path, err := loadForWrite(cmd)
			if err != nil {
				return err
			}
			if month == "" {
				month = keyring.MonthOf(time.Now())
			}
			id, err := kr.Rotate(time.Now(), month)
			if err != nil {
				return err
			}
			if err := kr.Save(path); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: added %s; new segments of %s use it\n", path, id, month)
			return nil
		},
	}
	rot.Flags().StringVar(&month, "month", "", "month to rotate, YYYY-MM")

	list := &cobra.Command{
		Use:   "list",
		Short: "List key IDs, months and creation times (never the key material)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadValid(cmd, g, sections["keys"])
			if err != nil {
				return err
			}
			kr, err := keyring.Load(cfg.Crypto.KeyringFile)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tMONTH\tCREATED\tCURRENT")
			keys := kr.Keys()
			for i, k := range keys {
				current := i == len(keys)-1 || keys[i+1].Month != k.Month
				fmt.Fprintf(tw, "%s\t%s\t%s\t%t\n", k.ID, k.Month, k.Created.Format(time.RFC3339), current)
			}
			return tw.Flush()
		},
	}
	c.AddCommand(gen, rot, list)
	return c
}
