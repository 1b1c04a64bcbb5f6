package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// env is an environment with a bridge key and an embedded NATS server allowed without
// authorization, unless m sets KAIROS_COLLECTOR_BRIDGE_KEY or KAIROS_COLLECTOR_NATS_INSECURE itself.
func env(m map[string]string) func(string) string {
	return func(k string) string {
		if v, ok := m[k]; ok {
			return v
		}
		switch k {
		case "KAIROS_COLLECTOR_BRIDGE_KEY":
			return "config-test-bridge-key-0123456789"
		case "KAIROS_COLLECTOR_NATS_INSECURE":
			return "true"
		}
		return ""
	}
}

func TestTheEmbeddedNATSNeedsAuthorizationUnlessExplicitlyInsecure(t *testing.T) {
	secure := map[string]string{"KAIROS_COLLECTOR_NATS_INSECURE": ""}
	cases := []struct {
		name string
		args []string
		want string // "" = accepted; else a part of the error
	}{
		{"NoAuthFile_IsRefusedNamingTheOptOut", nil, "--nats-insecure"},
		{"AnAuthFile_IsEnough", []string{"--nats-auth-file", "/etc/kairos/nats.conf"}, ""},
		{"TheOptOut_OnLoopback_IsAccepted", []string{"--nats-insecure"}, ""},
		{"TheOptOut_BeyondLoopback_IsRefused", []string{"--nats-insecure", "--nats-addr", "0.0.0.0:4222"}, "not loopback"},
		{"AnExternalServer_NeedsNoEmbeddedAuthorization", []string{"--nats-url", "nats://127.0.0.1:4222"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.args, env(secure))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Parse(%v): %v, want it accepted", tc.args, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Parse(%v): %v, want a refusal mentioning %q", tc.args, err, tc.want)
			}
		})
	}
}

func TestTheBridgeNeedsAKeyUnlessExplicitlyInsecure(t *testing.T) {
	noKey := map[string]string{"KAIROS_COLLECTOR_BRIDGE_KEY": ""}
	if _, err := Parse(nil, env(noKey)); err == nil || !strings.Contains(err.Error(), "bridge-insecure") {
		t.Fatalf("no key: %v, want a refusal naming the opt-out", err)
	}
	c, err := Parse([]string{"--bridge-insecure"}, env(noKey))
	if err != nil || len(c.BridgeKey) != 0 || !c.BridgeInsecure {
		t.Fatalf("insecure: %+v, %v", c, err)
	}
	file := filepath.Join(t.TempDir(), "bridge.key")
	if err := os.WriteFile(file, []byte("file-bridge-key-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = Parse(nil, env(map[string]string{"KAIROS_COLLECTOR_BRIDGE_KEY_FILE": file}))
	if err != nil || string(c.BridgeKey) != "file-bridge-key-0123456789abcdef" {
		t.Fatalf("key file: %q, %v", c.BridgeKey, err)
	}
	if _, err := Parse(nil, env(map[string]string{"KAIROS_COLLECTOR_BRIDGE_KEY": "short"})); err == nil {
		t.Fatal("a short key was accepted")
	}
}

func TestDefaultsBindLoopbackOnly(t *testing.T) {
	c, err := Parse(nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{c.BridgeAddr, c.GRPCAddr, c.MetricsAddr, c.NATSAddr} {
		if !strings.HasPrefix(a, "127.0.0.1:") {
			t.Errorf("default address %q is not loopback", a)
		}
	}
	if c.NATSURL != "" || c.SlowSubscriber != "conflate" || len(c.BarPeriods) == 0 || c.BarPeriods[0] != 60 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestFlagsOverrideEnvironmentWhichOverridesDefaults(t *testing.T) {
	e := env(map[string]string{
		"KAIROS_COLLECTOR_GRPC_ADDR":           "127.0.0.1:1",
		"KAIROS_COLLECTOR_BRIDGE_ADDR":         "127.0.0.1:2",
		"KAIROS_COLLECTOR_BAR_PERIODS":         "M1,H4",
		"KAIROS_COLLECTOR_INFERENCE_ENDPOINTS": "a:1, b:2",
		"KAIROS_COLLECTOR_FUTURE_TOLERANCE":    "3s",
		"KAIROS_COLLECTOR_ALLOW_CROSSED":       "true",
	})
	c, err := Parse([]string{"--grpc-addr", "127.0.0.1:9", "--slow-subscriber", "cut"}, e)
	if err != nil {
		t.Fatal(err)
	}
	if c.GRPCAddr != "127.0.0.1:9" || c.BridgeAddr != "127.0.0.1:2" || c.SlowSubscriber != "cut" || !c.AllowCrossed ||
		c.FutureTolerance != 3*time.Second || len(c.BarPeriods) != 2 || c.BarPeriods[1] != 14400 ||
		len(c.InferenceEndpoints) != 2 || c.InferenceEndpoints[1] != "b:2" {
		t.Fatalf("parsed %+v", c)
	}
	c, err = Parse([]string{"--inference-endpoints", "none"}, e)
	if err != nil || len(c.InferenceEndpoints) != 0 {
		t.Fatalf("none must disable the link: %v %v", c.InferenceEndpoints, err)
	}
}

func TestBadValuesNameTheVariableOrFlag(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, map[string]string{"KAIROS_COLLECTOR_NATS_QUEUE": "many"}, "KAIROS_COLLECTOR_NATS_QUEUE"},
		{nil, map[string]string{"KAIROS_COLLECTOR_BAR_PERIODS": "M0"}, "KAIROS_COLLECTOR_BAR_PERIODS"},
		{[]string{"--slow-subscriber", "drop"}, nil, "conflate"},
		{[]string{"--subscriber-queue", "0"}, nil, "subscriber-queue"},
		{[]string{"--log-level", "loud"}, nil, "log-level"},
		{[]string{"--log-level", "warning"}, nil, "debug, info, warn or error"},
		{nil, map[string]string{"KAIROS_COLLECTOR_HEARTBEAT_INTERVAL": "1"}, "KAIROS_COLLECTOR_HEARTBEAT_INTERVAL"},
		{nil, map[string]string{"KAIROS_COLLECTOR_ALLOW_CROSSED": "maybe"}, "KAIROS_COLLECTOR_ALLOW_CROSSED"},
		{[]string{"extra"}, nil, "unexpected arguments"},
	}
	for _, tc := range cases {
		_, err := Parse(tc.args, env(tc.env))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%v, %v) error %v; want it to mention %q", tc.args, tc.env, err, tc.want)
		}
	}
}

func TestTLSSettingsComeFromFlagsAndEnvironmentAndHalfAPairIsAnError(t *testing.T) {
	c, err := Parse([]string{"-tls-key", "/k"}, env(map[string]string{
		"KAIROS_COLLECTOR_TLS_CERT": "/c", "KAIROS_COLLECTOR_TLS_CLIENT_CA": "/ca",
		"KAIROS_COLLECTOR_INFERENCE_TLS_CA": "/ica", "KAIROS_COLLECTOR_INFERENCE_TLS_CERT": "/ic",
		"KAIROS_COLLECTOR_INFERENCE_TLS_KEY": "/ik",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.ServerTLS().Enabled() || c.TLSClientCA != "/ca" || c.InferenceTLS().CertFile != "/ic" || c.InferenceTLS().KeyFile != "/ik" {
		t.Fatalf("TLS config: %+v", c)
	}
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"-tls-cert", "/c"}, []string{"tls-cert", "tls-key"}},
		{[]string{"-tls-key", "/k"}, []string{"tls-cert", "tls-key"}},
		{[]string{"-tls-client-ca", "/ca"}, []string{"tls-client-ca"}},
		{[]string{"-inference-tls-cert", "/c", "-inference-tls-ca", "/ca"}, []string{"inference-tls-cert", "inference-tls-key"}},
		{[]string{"-inference-tls-cert", "/c", "-inference-tls-key", "/k"}, []string{"inference-tls-ca"}},
	}
	for _, tc := range tests {
		_, err := Parse(tc.args, env(nil))
		if err == nil {
			t.Errorf("%v accepted", tc.args)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not name %s", tc.args, err, w)
			}
		}
	}
}

func TestEverySettingHasItsVariableAndADefaultFromDefault(t *testing.T) {
	c := Default()
	settings := Flags(&c).Settings()
	if len(settings) < 35 {
		t.Fatalf("only %d settings", len(settings))
	}
	defaults := map[string]string{}
	for _, s := range settings {
		if s.Env != EnvName(s.Name) {
			t.Errorf("%s reads %s, want %s", s.Name, s.Env, EnvName(s.Name))
		}
		if s.Usage == "" || s.Secret != (s.Name == "token" || s.Name == "inference-token") {
			t.Errorf("%s: usage %q, secret %v", s.Name, s.Usage, s.Secret)
		}
		defaults[s.Name] = s.Default
	}
	for name, want := range map[string]string{"grpc-addr": "127.0.0.1:7401", "metrics-addr": "127.0.0.1:9401",
		"log-level": "info", "shutdown-timeout": "10s", "bar-periods": "M1,M5,M15,H1", "inference-endpoints": "127.0.0.1:7501"} {
		if defaults[name] != want {
			t.Errorf("default of %s is %q, want %q", name, defaults[name], want)
		}
	}
}
