// Command custody is the single binary of Custody: ingest, archiver, keys,
// query and operations, as subcommands.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries a process exit code through cobra without printing
// anything more: the command has already reported the problem.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	// SIGTERM and SIGINT cancel ctx; long-running commands then drain and
	// return, so main exits only after their owners have stopped.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "custody:", err)
		os.Exit(1)
	}
}

// globals are the flags every subcommand shares.
type globals struct {
	configPath string
	logFormat  string
	logLevel   string
	pprof      bool
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "custody",
		Short:         "Security logging and connection-data retention pipeline",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.configPath, "config", "configs/custody.yaml", "configuration file")
	pf.StringVar(&g.logFormat, "log-format", "json", "log format: json or console")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	pf.BoolVar(&g.pprof, "pprof", false, "long-running commands: also serve /debug/pprof/ on the metrics address (unauthenticated; only on a trusted address)")
	root.AddCommand(newConfigCmd(g), newVersionCmd(), newKeysCmd(g), newArchiveCmd(g), newIngestCmd(g), newAgentCmd(g), newNormalizeCmd(g), newSendCmd(g), newHookCmd(g), newQueryCmd(g), newRetentionCmd(g), newHoldCmd(g), newServeCmd(g), newAccessLogCmd(), newVerifyCmd(g), newExportCmd(g), newRequestsCmd(), newDLQCmd(g))
	return root
}
