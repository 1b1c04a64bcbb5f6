package config

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

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
	}
	for _, tc := range cases {
		_, err := Parse(tc.args, env(tc.env))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%v, %v) error %v; want it to mention %q", tc.args, tc.env, err, tc.want)
		}
	}
}
