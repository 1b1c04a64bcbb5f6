// Package pgtmp starts a throwaway PostgreSQL server from Debian's postgresql package: initdb and
// pg_ctl in a temporary directory, listening on 127.0.0.1 only, with fsync on. The execution tests
// (internal/testutil) and kairos-execution-bench's PostgreSQL journal run use it.
package pgtmp

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// DefaultBin is where Debian's postgresql package puts the server binaries.
const DefaultBin = "/usr/lib/postgresql/15/bin"

// Bin is $KAIROS_POSTGRES_BIN, else DefaultBin.
func Bin() string {
	if b := os.Getenv("KAIROS_POSTGRES_BIN"); b != "" {
		return b
	}
	return DefaultBin
}

// Server is a running throwaway PostgreSQL server. Close stops it and removes its files.
type Server struct {
	DSN  string
	dir  string
	data string
	opts string
	log  string
	bin  string
	as   func(name string, args ...string) *exec.Cmd
}

// Start runs initdb and starts the server on a free loopback port (port 0) or on port. As root,
// the server runs as the postgres user (initdb refuses root) in a directory it owns.
func Start(bin string, port int) (*Server, error) {
	if _, err := os.Stat(filepath.Join(bin, "initdb")); err != nil {
		return nil, fmt.Errorf("PostgreSQL server binaries not found in %s (apt package postgresql; make setup installs it): %w", bin, err)
	}
	if port == 0 {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		port = p
	}
	dir, err := os.MkdirTemp("", "kairos-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, data: filepath.Join(dir, "data"), log: filepath.Join(dir, "log"), bin: bin,
		as: func(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		s.as = func(name string, args ...string) *exec.Cmd {
			c := exec.Command(name, args...)
			c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
			c.Dir = dir
			return c
		}
	}
	if err := s.run("initdb", "-D", s.data, "-U", "kairos", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s.opts = fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=on", port, dir)
	if err := s.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s.DSN = fmt.Sprintf("postgres://kairos@127.0.0.1:%d/postgres?sslmode=disable", port)
	return s, nil
}

func (s *Server) run(tool string, args ...string) error {
	c := s.as(filepath.Join(s.bin, tool), args...)
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", tool, strings.Join(args, " "), err, out)
	}
	return nil
}

// Start starts a stopped server again on the same port and data.
func (s *Server) Start() error {
	return s.run("pg_ctl", "-D", s.data, "-o", s.opts, "-l", s.log, "-w", "-t", "60", "start")
}

// Stop shuts the server down at once (pg_ctl -m immediate): connections break, new ones are refused.
func (s *Server) Stop() error { return s.run("pg_ctl", "-D", s.data, "-m", "immediate", "-w", "stop") }

// Pause sends SIGSTOP to the postmaster and every backend: the server stalls, connections stay
// open and nothing answers. Resume undoes it.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume sends SIGCONT to what Pause stopped.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

// Close resumes a paused server, stops it and removes its files.
func (s *Server) Close() error {
	_ = s.signal(syscall.SIGCONT) // a paused server must run to stop
	err := s.Stop()
	if rerr := os.RemoveAll(s.dir); err == nil {
		err = rerr
	}
	return err
}

func (s *Server) signal(sig syscall.Signal) error {
	b, err := os.ReadFile(filepath.Join(s.data, "postmaster.pid"))
	if err != nil {
		return fmt.Errorf("postmaster.pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		return fmt.Errorf("postmaster.pid: %w", err)
	}
	for _, c := range append([]int{pid}, childrenOf(pid)...) {
		_ = syscall.Kill(c, sig)
	}
	return nil
}

// childrenOf lists the processes whose parent is pid (from /proc).
func childrenOf(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after its closing parenthesis.
		st := string(b)
		i := strings.LastIndexByte(st, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(st[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
