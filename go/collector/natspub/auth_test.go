package natspub_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/kairos-mt5/kairos/go/auth/natsauth"
	"github.com/kairos-mt5/kairos/go/collector/metrics"
	"github.com/kairos-mt5/kairos/go/collector/natspub"
	"github.com/kairos-mt5/kairos/go/testkit"
)

// identities are the users of deploy/nats/auth.conf.
var identities = []string{"collector", "inference", "execution", "observer", "streams", "recorder"}

// authFiles copies the checked-in deploy/nats/auth.conf into a temp dir with a generated
// passwords.conf beside it, as `kairos up` does, and returns the auth file and every identity.
func authFiles(t *testing.T) (string, map[string]natsauth.Creds) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "nats", "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	creds := map[string]natsauth.Creds{}
	var vars strings.Builder
	for _, id := range identities {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		creds[id] = natsauth.Creds{User: id, Password: hex.EncodeToString(b)}
		fmt.Fprintf(&vars, "KAIROS_NATS_%s_PASSWORD: %q\n", strings.ToUpper(id), creds[id].Password)
	}
	if err := os.WriteFile(filepath.Join(dir, "passwords.conf"), []byte(vars.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	auth := filepath.Join(dir, "auth.conf")
	if err := os.WriteFile(auth, src, 0o600); err != nil {
		t.Fatal(err)
	}
	return auth, creds
}

func startAuthServer(t *testing.T) (*server.Server, map[string]natsauth.Creds) {
	t.Helper()
	auth, creds := authFiles(t)
	srv, err := natspub.StartEmbedded("127.0.0.1:0", auth)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv, creds
}

// client connects as an identity; its asynchronous errors (permissions violations) arrive on errs.
type client struct {
	nc   *nats.Conn
	errs chan error
}

func connectAs(t *testing.T, srv *server.Server, c natsauth.Creds) *client {
	t.Helper()
	cl := &client{errs: make(chan error, 16)}
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(c.User, c.Password), nats.MaxReconnects(0),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { cl.errs <- err }))
	if err != nil {
		t.Fatalf("connect as %s: %v", c.User, err)
	}
	t.Cleanup(nc.Close)
	cl.nc = nc
	return cl
}

// violation waits (bounded) for a permissions violation reported to the client.
func (c *client) violation(t *testing.T, wait time.Duration) error {
	t.Helper()
	select {
	case err := <-c.errs:
		return err
	case <-time.After(wait):
		return nil
	}
}

func TestEmbeddedServerRefusesClientsWithoutValidCredentials(t *testing.T) {
	srv, creds := startAuthServer(t)
	for _, c := range []struct {
		name string
		opts []nats.Option
	}{
		{"NoCredentials", nil},
		{"WrongPassword", []nats.Option{nats.UserInfo("inference", "not-"+creds["inference"].Password)}},
		{"UnknownUser", []nats.Option{nats.UserInfo("attacker", "x")}},
		{"AnotherIdentitysPassword", []nats.Option{nats.UserInfo("inference", creds["collector"].Password)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			nc, err := nats.Connect(srv.ClientURL(), append(c.opts, nats.MaxReconnects(0), nats.Timeout(3*time.Second))...)
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
				t.Fatalf("err %v, want an authorization violation", err)
			}
		})
	}
}

func TestEachIdentityPublishesOnlyItsOwnSubjects(t *testing.T) {
	srv, creds := startAuthServer(t)
	// The observer sees everything that is published; a refused publish never reaches it.
	obs := connectAs(t, srv, creds["observer"])
	seen := make(chan string, 64)
	if _, err := obs.nc.Subscribe("kairos.>", func(m *nats.Msg) { seen <- m.Subject + " " + string(m.Data) }); err != nil {
		t.Fatal(err)
	}
	if err := obs.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		identity, subject string
		allowed           bool
	}{
		{"inference", "kairos.signal.EURUSD", true},
		{"collector", "kairos.signal.EURUSD", false},
		{"execution", "kairos.signal.EURUSD", false},
		{"observer", "kairos.signal.EURUSD", false},
		{"streams", "kairos.signal.EURUSD", false},
		{"collector", "kairos.md.EURUSD", true},
		{"collector", "kairos.bar.M1.EURUSD", true},
		{"collector", "kairos.pred.EURUSD", true},
		{"inference", "kairos.md.EURUSD", false},
		{"execution", "kairos.md.EURUSD", false},
		{"execution", "kairos.pred.EURUSD", false},
	}
	for i, c := range cases {
		name := fmt.Sprintf("%s_On_%s_Allowed_%v", c.identity, c.subject, c.allowed)
		t.Run(name, func(t *testing.T) {
			cl := connectAs(t, srv, creds[c.identity])
			payload := fmt.Sprintf("msg-%d", i)
			if err := cl.nc.Publish(c.subject, []byte(payload)); err != nil {
				t.Fatal(err)
			}
			_ = cl.nc.Flush()
			if c.allowed {
				select {
				case got := <-seen:
					if got != c.subject+" "+payload {
						t.Fatalf("observer got %q", got)
					}
				case <-time.After(3 * time.Second):
					t.Fatal("an allowed publish did not arrive")
				}
				return
			}
			err := cl.violation(t, 3*time.Second)
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
				t.Fatalf("err %v, want a permissions violation", err)
			}
			select {
			case got := <-seen:
				t.Fatalf("a refused publish arrived: %q", got)
			case <-time.After(200 * time.Millisecond):
			}
		})
	}
}

func TestEachIdentitySubscribesOnlyToWhatItReads(t *testing.T) {
	srv, creds := startAuthServer(t)
	cases := []struct {
		identity, subject string
		allowed           bool
	}{
		{"execution", "kairos.signal.>", true},
		{"execution", "kairos.md.>", true},
		{"observer", "kairos.>", true},
		{"execution", "kairos.bar.>", false},
		{"collector", "kairos.signal.>", false},
		{"collector", natspub.InboxPrefix + ".x", true},
		{"collector", "_INBOX.>", false},
		{"inference", "kairos.md.>", false},
		{"streams", "kairos.md.>", false},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s_On_%s_Allowed_%v", c.identity, c.subject, c.allowed), func(t *testing.T) {
			cl := connectAs(t, srv, creds[c.identity])
			if _, err := cl.nc.SubscribeSync(c.subject); err != nil {
				t.Fatal(err)
			}
			_ = cl.nc.Flush()
			wait := 3 * time.Second
			if c.allowed {
				wait = 300 * time.Millisecond // the server answers a refusal before the flush's PONG
			}
			err := cl.violation(t, wait)
			if c.allowed && err != nil {
				t.Fatalf("allowed subscription refused: %v", err)
			}
			if !c.allowed && (err == nil || !strings.Contains(strings.ToLower(err.Error()), "permissions violation")) {
				t.Fatalf("err %v, want a permissions violation", err)
			}
		})
	}
}

func TestStartEmbeddedRefusesAnAuthFileWithoutUsersOrWithAMissingPassword(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"NoUsers":         "max_payload: 1MB\n",
		"MissingPassword": "authorization { users = [ {user: a, password: $NOT_DEFINED_ANYWHERE_91} ] }\n",
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name+".conf")
			if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if srv, err := natspub.StartEmbedded("127.0.0.1:0", p); err == nil {
				srv.Shutdown()
				t.Fatal("started")
			}
		})
	}
}

// With deploy/nats/auth.conf, the collector identity's JetStream publishes are acknowledged: the
// acknowledgements come back on its own inbox prefix, the one subject it may subscribe to.
func TestJetStream_AsTheCollectorIdentity_PublishesAreAcknowledged(t *testing.T) {
	auth, creds := authFiles(t)
	conf := filepath.Join(filepath.Dir(auth), "js.conf")
	body := fmt.Sprintf("listen: \"127.0.0.1:-1\"\njetstream {store_dir: %q}\ninclude \"auth.conf\"\n", t.TempDir())
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	opts.NoSigs, opts.NoLog = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(srv.Shutdown)
	st := mdStream(t, srv.ClientURL(), nats.UserInfo(creds["streams"].User, creds["streams"].Password))
	p, err := natspub.ConnectJetStream(srv.ClientURL(), time.Second, metrics.New(),
		nats.UserInfo(creds["collector"].User, creds["collector"].Password))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(time.Second)
	p.Ticks(batch(1, 10), nil)
	p.Ticks(batch(11, 10), nil)
	if err := p.Stored(testkit.Context(t, 10*time.Second), p.Published()); err != nil {
		t.Fatalf("the collector's publishes were never acknowledged: %v", err)
	}
	info, err := st.Info(testkit.Context(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("stored %d messages, want 2", info.State.Msgs)
	}
}
