package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/custodylog/custody/internal/config"
)

func newConfigCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "config", Short: "Inspect the configuration"}
	c.AddCommand(&cobra.Command{
		Use:   "check",
		Short: "Validate the configuration file; one line per problem, non-zero exit if any",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(g.configPath)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitError{1}
			}
			problems := cfg.Problems()
			for _, p := range problems {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", g.configPath, p)
			}
			if len(problems) > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d problem(s)\n", g.configPath, len(problems))
				return exitError{1}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", g.configPath)
			return nil
		},
	})
	return c
}
