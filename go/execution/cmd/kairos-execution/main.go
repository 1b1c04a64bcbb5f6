// Command kairos-execution runs the Kairos execution service (serve, the default) and is its
// kill-switch CLI (kill): halt trading, cancel every working order and optionally flatten, in one
// authenticated call to the running service.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/app"
	"github.com/kairos-mt5/kairos/go/execution/config"
	"github.com/kairos-mt5/kairos/go/tlsreload"
)

const usage = `usage:
  kairos-execution [serve] [flags]   run the service (kairos-execution serve -h lists the flags)
  kairos-execution kill [flags]      kill switch: HALT, cancel all working orders, optionally --flatten
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

func run(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stderr, getenv)
	case "kill":
		return kill(args, stdout, stderr, getenv)
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "unknown command %q\n%s", cmd, usage)
	return 2
}

func serve(args []string, stderr io.Writer, getenv func(string) string) int {
	cfg, err := config.Parse("kairos-execution serve", args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "kairos-execution: config: %v\n", err)
		return 2
	}
	log := app.NewLogger(cfg.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, cfg, log, nil); err != nil {
		log.Error("execution service failed", "err", err)
		return 1
	}
	return 0
}

func kill(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("kairos-execution kill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", envOr(getenv, "GRPC_ADDR", "127.0.0.1:7601"), "execution service gRPC address (env KAIROS_EXECUTION_GRPC_ADDR)")
	token := fs.String("token", "", "bearer token (prefer env KAIROS_EXECUTION_TOKEN or --token-file)")
	tokenFile := fs.String("token-file", envOr(getenv, "TOKEN_FILE", ""), "file holding the bearer token")
	flatten := fs.Bool("flatten", false, "also close every open position with reduce-only market orders")
	reason := fs.String("reason", "kill switch", "reason recorded in the journal")
	timeout := fs.Duration("timeout", 10*time.Second, "deadline for the call")
	tlsCA := fs.String("tls-ca", "", "PEM CA bundle verifying the service's certificate; set, the call uses TLS")
	tlsCert := fs.String("tls-cert", "", "PEM client certificate for mutual TLS (with --tls-key)")
	tlsKey := fs.String("tls-key", "", "PEM client key for mutual TLS (with --tls-cert)")
	tlsName := fs.String("tls-server-name", "", "name to verify in the service's certificate (default: the host of --addr)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	tok := *token
	if tok == "" {
		tok = getenv(config.EnvPrefix + "TOKEN")
	}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "kill: --token-file: %v\n", err)
			return 2
		}
		tok = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	}
	if tok == "" {
		fmt.Fprintln(stderr, "kill: no token: set KAIROS_EXECUTION_TOKEN, --token-file or --token")
		return 2
	}
	creds := insecure.NewCredentials()
	if tc := (tlsreload.ClientConfig{CAFile: *tlsCA, CertFile: *tlsCert, KeyFile: *tlsKey, ServerName: *tlsName}); tc.Enabled() || tc.CertFile != "" || tc.KeyFile != "" {
		c, err := tc.Credentials()
		if err != nil {
			fmt.Fprintf(stderr, "kill: %v\n", err)
			return 2
		}
		creds = c
	}
	cc, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		fmt.Fprintf(stderr, "kill: %v\n", err)
		return 1
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	resp, err := execv1.NewExecutionServiceClient(cc).SetTradingState(ctx, &execv1.SetTradingStateRequest{
		State: execv1.TradingState_TRADING_STATE_HALTED, Reason: *reason, CancelAll: true, Flatten: *flatten})
	if err != nil {
		st, _ := status.FromError(err)
		fmt.Fprintf(stderr, "kill: %s: %s\n", st.Code(), st.Message())
		if resp != nil {
			printKill(stdout, resp)
		}
		return 1
	}
	printKill(stdout, resp)
	return 0
}

func printKill(w io.Writer, r *execv1.SetTradingStateResponse) {
	fmt.Fprintf(w, "trading state: %s -> %s\n", r.GetPrevious(), r.GetCurrent())
	fmt.Fprintf(w, "cancel requested: %d orders %v\n", len(r.GetCanceledClientOrderIds()), r.GetCanceledClientOrderIds())
	if len(r.GetFlattenClientOrderIds()) > 0 {
		fmt.Fprintf(w, "flattening orders: %d %v\n", len(r.GetFlattenClientOrderIds()), r.GetFlattenClientOrderIds())
	}
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(config.EnvPrefix + key); v != "" {
		return v
	}
	return def
}
