package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// buildVersion is the module version and Go version of this build.
func buildVersion() (string, string) {
	v, gov := "(devel)", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		v, gov = bi.Main.Version, bi.GoVersion
	}
	return v, gov
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the build's module version and Go version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			v, gov := buildVersion()
			fmt.Fprintf(cmd.OutOrStdout(), "custody %s %s\n", v, gov)
		},
	}
}
