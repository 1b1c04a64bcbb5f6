package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/kairos-mt5/kairos/go/execution/internal/svctest"
	"github.com/kairos-mt5/kairos/go/tlsreload/tlstest"
)

func TestKillCommandReachesAMutualTLSService(t *testing.T) {
	f := tlstest.NewFiles(t)
	s := svctest.Start(t, "", nil, "--tls-cert", f.ServerCert, "--tls-key", f.ServerKey, "--tls-client-ca", f.CAFile)
	env := map[string]string{"KAIROS_EXECUTION_GRPC_ADDR": s.Ready.GRPCAddr, "KAIROS_EXECUTION_TOKEN": svctest.Token}
	getenv := func(k string) string { return env[k] }
	var out, errb bytes.Buffer
	if code := run([]string{"kill", "--timeout", "3s"}, &out, &errb, getenv); code != 1 {
		t.Fatalf("plaintext kill against a TLS service: code %d, %q", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"kill", "--tls-ca", f.CAFile, "--tls-cert", f.ClientCert}, &out, &errb, getenv); code != 2 ||
		!strings.Contains(errb.String(), "tls-key") {
		t.Fatalf("half a client pair: code %d, %q", code, errb.String())
	}
	errb.Reset()
	out.Reset()
	if code := run([]string{"kill", "--tls-ca", f.CAFile, "--tls-cert", f.ClientCert, "--tls-key", f.ClientKey,
		"--tls-server-name", "localhost"}, &out, &errb, getenv); code != 0 {
		t.Fatalf("kill over mutual TLS: code %d, %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "-> TRADING_STATE_HALTED") {
		t.Fatalf("kill output: %s", out.String())
	}
}
