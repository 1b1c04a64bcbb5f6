package bridgelink

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
)

// The bridge key authenticates both ends of a connection with an HMAC-SHA256 challenge
// (docs/adr/0015-bridge-authentication.md): the server opens every connection with a Challenge
// carrying a fresh nonce, the bridge answers in Hello with a proof over both nonces, its session id,
// channel and api_version, and the server proves the key back in Welcome. The key never travels.

// NonceBytes is the length of both nonces and of both proofs.
const NonceBytes = 32

// MinKeyBytes is the shortest bridge key accepted: a guessable key would make the proofs an
// offline dictionary attack away. `kairos up` generates 64 hexadecimal characters (256 bits).
const MinKeyBytes = 16

// Proof labels: the bridge's and the server's proofs differ, so neither can be reflected as the other.
const (
	labelClient = "kairos-bridge-v1 client"
	labelServer = "kairos-bridge-v1 server"
)

// Auth failure reasons (kairos_bridge_auth_failures_total{reason}).
const (
	AuthMissingProof   = "missing_proof"   // Hello carries no proof: the EA has no key
	AuthMalformedProof = "malformed_proof" // nonce or proof of the wrong length
	AuthBadProof       = "bad_proof"       // the proof does not verify: another key, or another connection's proof
)

var authReasons = []string{AuthMissingProof, AuthMalformedProof, AuthBadProof}

// Errors of key configuration, from Listen and LoadKey.
var (
	// ErrNoKey: a listener has no bridge key and was not told to run without one.
	ErrNoKey = errors.New("no bridge key configured: set the bridge key file (kairos up writes one), or opt out explicitly with the insecure flag")
	// ErrWeakKey: the key is shorter than MinKeyBytes.
	ErrWeakKey = fmt.Errorf("bridge key shorter than %d bytes", MinKeyBytes)
)

// Proof is a handshake proof: HMAC-SHA256(key, label 0x00 || serverNonce || clientNonce ||
// sessionID (BE64) || channel (BE32) || apiVersion (BE32)). server selects the server's label.
func Proof(key []byte, server bool, serverNonce, clientNonce []byte, sessionID uint64, ch bridgev1.Channel, apiVersion uint32) []byte {
	label := labelClient
	if server {
		label = labelServer
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	m.Write([]byte{0})
	m.Write(serverNonce)
	m.Write(clientNonce)
	var b [16]byte
	binary.BigEndian.PutUint64(b[0:8], sessionID)
	binary.BigEndian.PutUint32(b[8:12], uint32(ch))
	binary.BigEndian.PutUint32(b[12:16], apiVersion)
	m.Write(b[:])
	return m.Sum(nil)
}

// ProveHello fills h's client nonce and proof for a connection whose Challenge carried serverNonce
// (the client side: tests, tools and the Python reference peer do the same).
func ProveHello(key []byte, serverNonce []byte, h *bridgev1.Hello) error {
	h.ClientNonce = make([]byte, NonceBytes)
	if _, err := rand.Read(h.ClientNonce); err != nil {
		return err
	}
	h.AuthProof = Proof(key, false, serverNonce, h.ClientNonce, h.SessionId, h.Channel, h.ApiVersion)
	return nil
}

// verifyHello checks h's proof against this connection's nonce; "" when it verifies, else the
// failure reason. The comparison takes the same time wherever the proofs differ.
func verifyHello(key, serverNonce []byte, h *bridgev1.Hello) string {
	switch {
	case len(h.AuthProof) == 0:
		return AuthMissingProof
	case len(h.AuthProof) != NonceBytes || len(h.ClientNonce) != NonceBytes:
		return AuthMalformedProof
	}
	want := Proof(key, false, serverNonce, h.ClientNonce, h.SessionId, h.Channel, h.ApiVersion)
	if !hmac.Equal(want, h.AuthProof) {
		return AuthBadProof
	}
	return ""
}

// ParseKey turns the text of a key file or variable into the key: surrounding white space (a
// trailing newline) is not part of it.
func ParseKey(text string) ([]byte, error) {
	k := strings.TrimSpace(text)
	if k == "" {
		return nil, ErrNoKey
	}
	if len(k) < MinKeyBytes {
		return nil, ErrWeakKey
	}
	return []byte(k), nil
}

// LoadKey reads the bridge key from file (preferred: it stays out of the process list and the
// environment) or, if file is empty, from the value of an environment variable. Both empty:
// nil, nil (no key). The key is the file's text without surrounding white space.
func LoadKey(file, env string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("bridge key file: %w", err)
		}
		k, err := ParseKey(string(b))
		if err != nil {
			return nil, fmt.Errorf("bridge key file %s: %w", file, err)
		}
		return k, nil
	}
	if env == "" {
		return nil, nil
	}
	return ParseKey(env)
}
