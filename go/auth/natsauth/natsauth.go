// Package natsauth reads a service's NATS credentials (ADR 0064): a file holding one line
// "user:password", mode 0600, created per run directory by `kairos up` and by the deploy tooling.
// The password never appears in argv, URLs or logs; the server (embedded in the collector, or
// nats-server with deploy/nats/nats.conf) gives each user only the subjects it needs.
package natsauth

import (
	"fmt"
	"os"
	"strings"
)

// Creds is one NATS identity.
type Creds struct {
	User     string
	Password string
}

// String never shows the password.
func (c Creds) String() string { return "natsauth.Creds{User: " + c.User + "}" }

// Read reads a credentials file: the first line, "user:password" (whitespace around it trimmed).
// Errors name the file, never its content.
func Read(path string) (Creds, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Creds{}, fmt.Errorf("NATS credentials: %w", err)
	}
	line := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	user, pass, ok := strings.Cut(line, ":")
	if !ok || user == "" || pass == "" {
		return Creds{}, fmt.Errorf("NATS credentials %s: want one line \"user:password\"", path)
	}
	return Creds{User: user, Password: pass}, nil
}
