// Package chaos is the fault half of the chaos suite (make chaos, ADR 0055): the real execution
// service binary, built with the chaos build tag, under load from concurrent gRPC clients, in front
// of the MT5 test peer, killed with SIGKILL at targeted points (KAIROS_FAULT) or starved of its
// journal (PostgreSQL stopped or paused with SIGSTOP), then restarted. Each scenario checks, against
// the venue's own record (the test terminal's PLACE commands), that no acknowledged order is lost
// and none was sent twice, and the suite writes the figures to bench/results/reliability.json.
// Everything runs on loopback and is bounded in time. The tests need the chaos build tag.
package chaos
