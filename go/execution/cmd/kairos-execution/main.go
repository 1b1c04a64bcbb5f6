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
	"github.com/kairos-mt5/kairos/go/envflag"
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
	// The kill switch reads the service's own variables for the address and the token, and no
	// others: the service's TLS variables name its server pair, not a client's.
	s := envflag.New("kairos-execution kill", config.EnvPrefix)
	s.FlagSet().SetOutput(stderr)
	addr, tok, tokenFile := "127.0.0.1:7601", "", ""
	flatten, reason, timeout := false, "kill switch", 10*time.Second
	var tlsCA, tlsCert, tlsKey, tlsName string
	s.StringVar(&addr, "addr", "execution service gRPC address", envflag.Env(config.EnvPrefix+"GRPC_ADDR"))
	s.StringVar(&tok, "token", "bearer token (prefer the env var or --token-file)", envflag.Secret())
	s.StringVar(&tokenFile, "token-file", "file holding the bearer token")
	s.BoolVar(&flatten, "flatten", "also close every open position with reduce-only market orders", envflag.NoEnv())
	s.StringVar(&reason, "reason", "reason recorded in the journal", envflag.NoEnv())
	s.DurationVar(&timeout, "timeout", "deadline for the call", envflag.NoEnv())
	s.StringVar(&tlsCA, "tls-ca", "PEM CA bundle verifying the service's certificate; set, the call uses TLS", envflag.NoEnv())
	s.StringVar(&tlsCert, "tls-cert", "PEM client certificate for mutual TLS (with --tls-key)", envflag.NoEnv())
	s.StringVar(&tlsKey, "tls-key", "PEM client key for mutual TLS (with --tls-cert)", envflag.NoEnv())
	s.StringVar(&tlsName, "tls-server-name", "name to verify in the service's certificate (default: the host of --addr)", envflag.NoEnv())
	if err := s.Parse(args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2 // the flag package has printed the error and the usage
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
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
	if tc := (tlsreload.ClientConfig{CAFile: tlsCA, CertFile: tlsCert, KeyFile: tlsKey, ServerName: tlsName}); tc.Enabled() || tc.CertFile != "" || tc.KeyFile != "" {
		c, err := tc.Credentials()
		if err != nil {
			fmt.Fprintf(stderr, "kill: %v\n", err)
			return 2
		}
		creds = c
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		fmt.Fprintf(stderr, "kill: %v\n", err)
		return 1
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	resp, err := execv1.NewExecutionServiceClient(cc).SetTradingState(ctx, &execv1.SetTradingStateRequest{
		State: execv1.TradingState_TRADING_STATE_HALTED, Reason: reason, CancelAll: true, Flatten: flatten})
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
