package natsauth_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kairos-mt5/kairos/go/auth/natsauth"
)

func TestReadTakesUserAndPasswordFromTheFirstLine(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, content, user, pass string
		wantErr                   bool
	}{
		{"OneLine", "inference:s3cret\n", "inference", "s3cret", false},
		{"ColonInPassword", "execution:a:b\n", "execution", "a:b", false},
		{"Trimmed", "  collector:pw  \nignored", "collector", "pw", false},
		{"NoColon", "justapassword\n", "", "", true},
		{"NoPassword", "user:\n", "", "", true},
		{"Empty", "", "", "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name)
			if err := os.WriteFile(p, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := natsauth.Read(p)
			if (err != nil) != c.wantErr || got.User != c.user || got.Password != c.pass {
				t.Fatalf("Read = %+v, %v; want %s/%s (error %v)", got, err, c.user, c.pass, c.wantErr)
			}
			if err != nil && c.content != "" && strings.Contains(err.Error(), c.content) {
				t.Fatalf("the error shows the file's content: %v", err)
			}
		})
	}
}

func TestCredsNeverPrintThePassword(t *testing.T) {
	c := natsauth.Creds{User: "inference", Password: "pw-91f2"}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c)} {
		if strings.Contains(s, c.Password) {
			t.Fatalf("printed the password: %s", s)
		}
	}
}
