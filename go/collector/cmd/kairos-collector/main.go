// Command kairos-collector runs the Kairos market-data collector: bridge listener, validation,
// bars, MarketDataService, inference link and NATS fan-out. Configuration: flags or
// KAIROS_COLLECTOR_* environment variables (kairos-collector -h lists them; docs/collector.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kairos-mt5/kairos/go/collector"
	"github.com/kairos-mt5/kairos/go/collector/config"
)

func main() {
	cfg, err := config.FromOS()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kairos-collector:", err)
		os.Exit(2)
	}
	log := collector.NewLogger(cfg.LogLevel)
	svc, err := collector.New(cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := svc.Run(ctx); err != nil {
		log.Error("collector stopped with errors", "err", err)
		os.Exit(1)
	}
}
