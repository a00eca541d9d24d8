package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/custodylog/custody/internal/config"
)

func newConfigCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "config", Short: "Inspect the configuration"}
	var forCmd string
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration file; one line per problem, non-zero exit if any",
		Long: `Reads the configuration, resolves its secrets (environment and files) and
validates it; prints one line per problem, naming the key, and exits 1 if
there is any. With --for, checks only the sections that command uses, as
the command itself will: a git server running the hook, for example, needs
no S3 credentials or keyring.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			use := config.All
			if forCmd != "" {
				var ok bool
				if use, ok = sections[forCmd]; !ok {
					return fmt.Errorf("--for %q is not one of %s", forCmd, strings.Join(commandNames(), ", "))
				}
			}
			cfg, err := config.Load(g.configPath)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitError{1}
			}
			problems := cfg.Problems(use...)
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
	}
	check.Flags().StringVar(&forCmd, "for", "", "check only the sections this command uses: "+strings.Join(commandNames(), ", "))
	c.AddCommand(check)
	return c
}

func commandNames() []string {
	var out []string
	for n := range sections {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
