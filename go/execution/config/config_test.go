package config

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kairos-mt5/kairos/go/envflag"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/risk"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaultsAreSafeAndParseWithoutInput(t *testing.T) {
	c, err := Parse("test", nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if want := Default(); !reflect.DeepEqual(*c, want) {
		t.Fatalf("Parse with no input differs from Default():\n got %+v\nwant %+v", *c, want)
	}
	for _, a := range []string{c.GRPCAddr, c.MetricsAddr, c.BridgeAddr} {
		if !strings.HasPrefix(a, "127.0.0.1:") {
			t.Errorf("default address %q is not loopback", a)
		}
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"grpc-addr", c.GRPCAddr, "127.0.0.1:7601"},
		{"metrics-addr", c.MetricsAddr, "127.0.0.1:9601"},
		{"bridge-addr", c.BridgeAddr, "127.0.0.1:7600"},
		{"nats-url", c.NATSURL, "nats://127.0.0.1:4222"},
		{"venue", c.Venue, "paper"},
		{"clock", c.Clock, "wall"},
		{"journal-sync", c.JournalSync, "full"},
		{"max-orders-in-memory", c.MaxOrdersInMemory, 100_000},
		{"token", c.Token, ""},
		{"instruments", len(c.Instruments), 4},
		{"max-order-qty", c.Limits.MaxOrderQuantity.String(), "10"},
		{"max-open-orders", c.Limits.MaxOpenOrders, uint32(200)},
		{"submit-rate", c.Limits.SubmitRate, risk.RateLimit{MaxCount: 100, WindowMS: 1000}},
		{"message-rate", c.Limits.MessageRate, risk.RateLimit{MaxCount: 200, WindowMS: 1000}},
		{"denial-rate", c.Limits.DenialRate, risk.RateLimit{MaxCount: 200, WindowMS: 1000}},
		{"daily-loss-state", c.Limits.DailyLossState, risk.Halted},
		{"allowed-symbols", len(c.Limits.AllowedSymbols), 0},
		{"heartbeat-interval", c.MT5.HeartbeatInterval, time.Second},
		{"mt5-deviation-points", c.MT5.DeviationPoints, uint32(10)},
		{"policy", c.Policy.Enabled, true},
		{"signal-lots", c.Policy.Lots.String(), "0.10"},
		{"signal-max-age", c.Policy.MaxSignalAge, 5 * time.Second},
		{"open-reads-on-loopback", c.OpenReadsOnLoopback, false},
		{"nats-creds", c.NATSCreds, ""},
		{"shutdown-timeout", c.ShutdownTimeout, 10 * time.Second},
		{"log-level", c.LogLevel, "info"},
		{"gc-percent", c.GCPercent, -1},
		{"gc-memory-limit-mib", c.GCMemoryLimitMiB, 256},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("default %s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestFlagsWinOverTheEnvironmentWhichWinsOverDefaults(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("from-file\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	instruments := filepath.Join(dir, "instruments.json")
	if err := os.WriteFile(instruments, []byte(`[{"symbol":"XAUUSD","digits":2,"volume_step":"0.01","volume_min":"0.01","contract_size":"100"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		ok   func(*Config) bool
	}{
		{"string from env", nil, map[string]string{"KAIROS_EXECUTION_GRPC_ADDR": "127.0.0.1:1"},
			func(c *Config) bool { return c.GRPCAddr == "127.0.0.1:1" }},
		{"string flag wins", []string{"--grpc-addr", "127.0.0.1:2"}, map[string]string{"KAIROS_EXECUTION_GRPC_ADDR": "127.0.0.1:1"},
			func(c *Config) bool { return c.GRPCAddr == "127.0.0.1:2" }},
		{"empty flag disables metrics despite env", []string{"--metrics-addr="}, map[string]string{"KAIROS_EXECUTION_METRICS_ADDR": "127.0.0.1:3"},
			func(c *Config) bool { return c.MetricsAddr == "" }},
		{"list from env", nil, map[string]string{"KAIROS_EXECUTION_ALLOWED_SYMBOLS": " EURUSD, ,GBPUSD,"},
			func(c *Config) bool { return reflect.DeepEqual(c.Limits.AllowedSymbols, []string{"EURUSD", "GBPUSD"}) }},
		{"decimal from env", nil, map[string]string{"KAIROS_EXECUTION_MAX_ORDER_QTY": "2.5"},
			func(c *Config) bool { return c.Limits.MaxOrderQuantity.Cmp(decimal.MustParse("2.5")) == 0 }},
		{"decimal flag wins", []string{"--signal-lots", "0.2"}, map[string]string{"KAIROS_EXECUTION_SIGNAL_LOTS": "0.5"},
			func(c *Config) bool { return c.Policy.Lots.Cmp(decimal.MustParse("0.2")) == 0 }},
		{"state from env, any case", nil, map[string]string{"KAIROS_EXECUTION_DAILY_LOSS_STATE": "reducing"},
			func(c *Config) bool { return c.Limits.DailyLossState == risk.Reducing }},
		{"uint32 from env", nil, map[string]string{"KAIROS_EXECUTION_SUBMIT_RATE": "7", "KAIROS_EXECUTION_MESSAGE_WINDOW_MS": "250"},
			func(c *Config) bool { return c.Limits.SubmitRate.MaxCount == 7 && c.Limits.MessageRate.WindowMS == 250 }},
		{"denial budget from flag and env", []string{"--denial-rate", "50"}, map[string]string{"KAIROS_EXECUTION_DENIAL_WINDOW_MS": "250"},
			func(c *Config) bool { return c.Limits.DenialRate == risk.RateLimit{MaxCount: 50, WindowMS: 250} }},
		{"int64 flag", []string{"--paper-slippage-points", "-2"}, nil,
			func(c *Config) bool { return c.Paper.SlippagePoints == -2 }},
		{"bool from env", nil, map[string]string{"KAIROS_EXECUTION_POLICY": "false", "KAIROS_EXECUTION_MT5_CANCEL_ON_DISCONNECT": "true"},
			func(c *Config) bool { return !c.Policy.Enabled && c.MT5.CancelOnDisconnect }},
		{"bool flag wins", []string{"--policy"}, map[string]string{"KAIROS_EXECUTION_POLICY": "false"},
			func(c *Config) bool { return c.Policy.Enabled }},
		{"float flag", []string{"--signal-threshold", "0.75"}, nil,
			func(c *Config) bool { return c.Policy.Threshold == 0.75 }},
		{"duration from env", nil, map[string]string{"KAIROS_EXECUTION_HEARTBEAT_INTERVAL": "250ms"},
			func(c *Config) bool { return c.MT5.HeartbeatInterval == 250*time.Millisecond }},
		{"token from env", nil, map[string]string{"KAIROS_EXECUTION_TOKEN": "from-env"},
			func(c *Config) bool { return c.Token == "from-env" }},
		{"token file wins over the token", []string{"--token", "from-flag"}, map[string]string{"KAIROS_EXECUTION_TOKEN_FILE": tokenFile},
			func(c *Config) bool { return c.Token == "from-file" }},
		{"instruments file replaces the defaults", []string{"--instruments-file", instruments}, nil,
			func(c *Config) bool { return len(c.Instruments) == 1 && c.Instruments[0].Symbol == "XAUUSD" }},
		{"log level warn", nil, map[string]string{"KAIROS_EXECUTION_LOG_LEVEL": "warn"},
			func(c *Config) bool { return c.LogLevel == "warn" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("test", tc.args, env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.ok(c) {
				t.Fatalf("parsed %+v", *c)
			}
		})
	}
}

func TestBadValuesAreErrorsNamingTheVariableOrFlag(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"bad decimal in env", nil, map[string]string{"KAIROS_EXECUTION_MAX_ORDER_QTY": "ten"}, []string{"KAIROS_EXECUTION_MAX_ORDER_QTY", "ten"}},
		{"uint32 overflow in env", nil, map[string]string{"KAIROS_EXECUTION_MAX_OPEN_ORDERS": "4294967296"}, []string{"KAIROS_EXECUTION_MAX_OPEN_ORDERS"}},
		{"bad duration in env", nil, map[string]string{"KAIROS_EXECUTION_SIGNAL_MAX_AGE": "30"}, []string{"KAIROS_EXECUTION_SIGNAL_MAX_AGE"}},
		{"bad bool in env", nil, map[string]string{"KAIROS_EXECUTION_POLICY": "sometimes"}, []string{"KAIROS_EXECUTION_POLICY"}},
		{"bad state in env", nil, map[string]string{"KAIROS_EXECUTION_DRAWDOWN_STATE": "PANIC"}, []string{"KAIROS_EXECUTION_DRAWDOWN_STATE", "ACTIVE, REDUCING or HALTED"}},
		{"bad flag value", []string{"--submit-rate", "-1"}, nil, []string{"submit-rate"}},
		{"unknown flag", []string{"--mt5-heartbeat", "1s"}, nil, []string{"mt5-heartbeat"}},
		{"unexpected argument", []string{"extra"}, nil, []string{"unexpected arguments"}},
		{"venue", []string{"--venue", "ib"}, nil, []string{"venue", "paper or mt5"}},
		{"clock", nil, map[string]string{"KAIROS_EXECUTION_CLOCK": "tester"}, []string{"clock", "wall or market"}},
		{"journal sync", nil, map[string]string{"KAIROS_EXECUTION_JOURNAL_SYNC": "off"}, []string{"journal-sync"}},
		{"initial state", []string{"--initial-state", "OPEN"}, nil, []string{"initial-state"}},
		{"breaker state ACTIVE", []string{"--daily-loss-state", "ACTIVE"}, nil, []string{"REDUCING or HALTED"}},
		{"empty db", []string{"--db="}, nil, []string{"db"}},
		{"too few orders in memory", []string{"--max-orders-in-memory", "99"}, nil, []string{"max-orders-in-memory", "at least 100"}},
		{"threshold above 1", []string{"--signal-threshold", "1.5"}, nil, []string{"signal-threshold"}},
		{"zero lots", []string{"--signal-lots", "0"}, nil, []string{"signal-lots"}},
		{"heartbeat too short", []string{"--heartbeat-interval", "1ms"}, nil, []string{"heartbeat-interval"}},
		{"unknown log level", []string{"--log-level", "loud"}, nil, []string{"log-level", "debug, info, warn or error"}},
		{"log level warning is spelt warn", []string{"--log-level", "warning"}, nil, []string{"log-level"}},
		{"a GC target below off", []string{"--gc-percent", "-2"}, nil, []string{"gc-percent", "-1 (off)"}},
		{"a negative memory limit", []string{"--gc-memory-limit-mib", "-1"}, nil, []string{"gc-memory-limit-mib", "0 (none)"}},
		{"a collector that never runs", []string{"--gc-memory-limit-mib", "0"}, nil, []string{"never run"}},
		{"missing token file", []string{"--token-file", "/nonexistent/token"}, nil, []string{"token-file"}},
		{"missing instruments file", []string{"--instruments-file", "/nonexistent/i.json"}, nil, []string{"/nonexistent/i.json"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("test", tc.args, env(tc.env))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestEverySettingHasItsVariableAndTheTokenIsASecret(t *testing.T) {
	c := Default()
	settings := Flags("test", &c).Settings()
	if len(settings) < 50 {
		t.Fatalf("only %d settings", len(settings))
	}
	for _, s := range settings {
		if want := envflag.EnvName(EnvPrefix, s.Name); s.Env != want {
			t.Errorf("%s reads %s, want %s", s.Name, s.Env, want)
		}
		if s.Usage == "" {
			t.Errorf("%s has no usage", s.Name)
		}
		if (s.Name == "token") != s.Secret {
			t.Errorf("%s: secret=%v", s.Name, s.Secret)
		}
	}
}

func TestTheTokenIsNeverPrinted(t *testing.T) {
	const secret = "s3cr3t-token-value"
	c := Default()
	c.Token = secret // even a token that was somehow a default stays hidden
	s := Flags("test", &c)
	var out bytes.Buffer
	s.FlagSet().SetOutput(&out)
	if err := s.Parse([]string{"-h"}, env(map[string]string{"KAIROS_EXECUTION_TOKEN": secret})); !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), secret) {
		t.Fatalf("-help prints the token:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "-token string") {
		t.Fatalf("-help does not list the token flag:\n%s", out.String())
	}
}
