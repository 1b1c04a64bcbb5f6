// Package envflag registers command-line flags that fall back to an environment variable and then
// to a default, the one configuration plumbing of the Go services. The Python inference server
// (python/kairos/inference/config.py) has the same precedence and spells the settings it shares
// with them the same way (grpc-addr, metrics-addr, log-level, shutdown-timeout, ...); unlike here,
// an empty variable there counts as set.
//
// Rules, the same for every setting:
//
//   - precedence: the flag, then the environment variable, then the default;
//   - the variable is the set's prefix plus the flag name in upper snake case
//     (prefix KAIROS_COLLECTOR_, flag grpc-addr: KAIROS_COLLECTOR_GRPC_ADDR); an empty variable
//     counts as unset;
//   - the default is the value the destination holds when the flag is registered, so a service's
//     Default() function is the one place its defaults live;
//   - a variable that does not parse is an error naming the variable (and its value, unless the
//     setting is a secret: a secret's value or default is never printed);
//   - a variable is read only when its flag is absent.
//
// Settings enumerates everything registered (flag, variable, default, usage) for the
// configuration reference (tools/deploy/kairos_deploy.py config-docs reads it through -help, where
// every usage line ends with "(env VARIABLE)") and for tests.
//
// It is its own module in go.work, shared by the collector and the execution service.
package envflag

import (
	"errors"
	"flag"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Setting describes one registered flag.
type Setting struct {
	// Name is the flag name, without dashes (grpc-addr).
	Name string
	// Env is the environment variable read when the flag is absent; empty when it has none.
	Env string
	// Default is the default as -help prints it; empty for a secret.
	Default string
	// Usage is the help text (without the "(env VARIABLE)" that -help appends).
	Usage string
	// Secret marks a value that is never printed (tokens, passwords).
	Secret bool
}

// Option changes how a setting is registered.
type Option func(*Setting)

// Secret marks the setting as a secret: its value and default are never printed, not even in
// the error about a variable that does not parse (a value given as a flag is in the process list
// anyway; prefer a file or the variable).
func Secret() Option { return func(s *Setting) { s.Secret = true } }

// Env names the setting's environment variable in full instead of deriving it from the prefix.
func Env(variable string) Option { return func(s *Setting) { s.Env = variable } }

// NoEnv registers a plain flag: no environment variable is read for it.
func NoEnv() Option { return func(s *Setting) { s.Env = "" } }

// Set is a flag set whose flags fall back to environment variables.
type Set struct {
	fs       *flag.FlagSet
	prefix   string
	settings []Setting
}

// New returns an empty set; name is the program name -help prints, envPrefix starts every
// derived variable (KAIROS_COLLECTOR_). Errors are returned, not fatal (flag.ContinueOnError).
func New(name, envPrefix string) *Set {
	s := &Set{fs: flag.NewFlagSet(name, flag.ContinueOnError), prefix: envPrefix}
	s.fs.Usage = func() {
		fmt.Fprintf(s.fs.Output(), "Usage of %s:\n", name)
		s.PrintDefaults()
	}
	return s
}

// FlagSet is the underlying flag set (for its output and usage, or flags registered by hand).
func (s *Set) FlagSet() *flag.FlagSet { return s.fs }

// EnvName is the variable a flag name derives: prefix + upper snake case.
func (s *Set) EnvName(flagName string) string { return EnvName(s.prefix, flagName) }

// EnvName is the variable of flagName under prefix: EnvName("KAIROS_X_", "grpc-addr") is
// KAIROS_X_GRPC_ADDR.
func EnvName(prefix, flagName string) string {
	return prefix + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(flagName))
}

// Var registers any flag.Value; its current value is the default.
func (s *Set) Var(v flag.Value, name, usage string, opts ...Option) {
	st := Setting{Name: name, Env: s.EnvName(name), Usage: usage}
	for _, o := range opts {
		o(&st)
	}
	help := usage
	if st.Env != "" {
		help += " (env " + st.Env + ")"
	}
	if st.Secret {
		v = &secretValue{v}
	}
	s.fs.Var(v, name, help)
	if !st.Secret {
		st.Default = v.String()
	}
	s.settings = append(s.settings, st)
}

// StringVar registers a string flag; *p is the default.
func (s *Set) StringVar(p *string, name, usage string, opts ...Option) {
	s.Var((*stringValue)(p), name, usage, opts...)
}

// IntVar registers an int flag; *p is the default.
func (s *Set) IntVar(p *int, name, usage string, opts ...Option) {
	s.Var((*intValue)(p), name, usage, opts...)
}

// Int64Var registers an int64 flag; *p is the default.
func (s *Set) Int64Var(p *int64, name, usage string, opts ...Option) {
	s.Var((*int64Value)(p), name, usage, opts...)
}

// Uint32Var registers a uint32 flag; *p is the default. Values beyond 32 bits are an error.
func (s *Set) Uint32Var(p *uint32, name, usage string, opts ...Option) {
	s.Var((*uint32Value)(p), name, usage, opts...)
}

// Float64Var registers a float64 flag; *p is the default.
func (s *Set) Float64Var(p *float64, name, usage string, opts ...Option) {
	s.Var((*float64Value)(p), name, usage, opts...)
}

// BoolVar registers a bool flag (-name alone sets it; the variable takes strconv.ParseBool
// spellings); *p is the default.
func (s *Set) BoolVar(p *bool, name, usage string, opts ...Option) {
	s.Var((*boolValue)(p), name, usage, opts...)
}

// DurationVar registers a time.Duration flag (Go syntax: 500ms, 5s, 1h30m); *p is the default.
func (s *Set) DurationVar(p *time.Duration, name, usage string, opts ...Option) {
	s.Var((*durationValue)(p), name, usage, opts...)
}

// ListVar registers a comma-separated list: items are trimmed, empty items dropped, and a new
// value replaces the list (it does not append); *p is the default.
func (s *Set) ListVar(p *[]string, name, usage string, opts ...Option) {
	s.Var((*listValue)(p), name, usage, opts...)
}

// Parse parses the flags in args, then, for every setting whose flag was absent, its non-empty
// variable from getenv. Every variable that does not parse is reported (errors.Join), each error
// naming the variable. flag.ErrHelp comes back unchanged for -h and -help.
func (s *Set) Parse(args []string, getenv func(string) string) error {
	if err := s.fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	s.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	for _, st := range s.settings {
		if st.Env == "" || given[st.Name] {
			continue
		}
		v := getenv(st.Env)
		if v == "" {
			continue
		}
		if err := s.fs.Lookup(st.Name).Value.Set(v); err != nil {
			if st.Secret {
				// The parse error may quote the value: only the variable is named.
				errs = append(errs, fmt.Errorf("%s: invalid value (withheld: a secret)", st.Env))
			} else {
				errs = append(errs, fmt.Errorf("%s=%q: %w", st.Env, v, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Args are the arguments left after the flags.
func (s *Set) Args() []string { return s.fs.Args() }

// Settings lists every setting in registration order.
func (s *Set) Settings() []Setting { return append([]Setting(nil), s.settings...) }

// Lookup returns the setting of a flag name.
func (s *Set) Lookup(name string) (Setting, bool) {
	for _, st := range s.settings {
		if st.Name == name {
			return st, true
		}
	}
	return Setting{}, false
}

// PrintDefaults prints every flag as flag.PrintDefaults does ("  -name type", the usage indented
// on the next line, "(default x)" unless the default is the type's zero value, strings quoted),
// naming this package's types too (string, int, uint32, float, duration, list).
func (s *Set) PrintDefaults() {
	s.fs.VisitAll(func(f *flag.Flag) {
		var b strings.Builder
		fmt.Fprintf(&b, "  -%s", f.Name)
		name, usage := flag.UnquoteUsage(f)
		if t, ok := f.Value.(typed); ok && name == "value" {
			name = t.typeName()
		}
		if name != "" {
			b.WriteString(" " + name)
		}
		if b.Len() <= 4 {
			b.WriteString("\t")
		} else {
			b.WriteString("\n    \t")
		}
		b.WriteString(strings.ReplaceAll(usage, "\n", "\n    \t"))
		if f.DefValue != zeroString(f.Value) {
			if t, ok := f.Value.(typed); ok && t.typeName() == "string" {
				fmt.Fprintf(&b, " (default %q)", f.DefValue)
			} else {
				fmt.Fprintf(&b, " (default %v)", f.DefValue)
			}
		}
		fmt.Fprint(s.fs.Output(), b.String(), "\n")
	})
}

// zeroString is what a fresh zero value of v's type prints ("" if it cannot tell).
func zeroString(v flag.Value) (out string) {
	defer func() {
		if recover() != nil {
			out = ""
		}
	}()
	typ := reflect.TypeOf(v)
	var z reflect.Value
	if typ.Kind() == reflect.Pointer {
		z = reflect.New(typ.Elem())
	} else {
		z = reflect.Zero(typ)
	}
	return z.Interface().(flag.Value).String()
}

// typed values name their type in -help.
type typed interface{ typeName() string }

// The value types. Each String tolerates a nil receiver: flag.PrintDefaults calls it on zero values.

func (*stringValue) typeName() string { return "string" }

type stringValue string

func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }
func (v *stringValue) String() string {
	if v == nil {
		return ""
	}
	return string(*v)
}

func (*intValue) typeName() string { return "int" }

type intValue int

func (v *intValue) Set(s string) error {
	n, err := strconv.ParseInt(s, 0, strconv.IntSize)
	if err != nil {
		return numError(err)
	}
	*v = intValue(n)
	return nil
}
func (v *intValue) String() string {
	if v == nil {
		return "0"
	}
	return strconv.Itoa(int(*v))
}

func (*int64Value) typeName() string { return "int" }

type int64Value int64

func (v *int64Value) Set(s string) error {
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil {
		return numError(err)
	}
	*v = int64Value(n)
	return nil
}
func (v *int64Value) String() string {
	if v == nil {
		return "0"
	}
	return strconv.FormatInt(int64(*v), 10)
}

func (*uint32Value) typeName() string { return "uint32" }

type uint32Value uint32

func (v *uint32Value) Set(s string) error {
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return numError(err)
	}
	*v = uint32Value(n)
	return nil
}
func (v *uint32Value) String() string {
	if v == nil {
		return "0"
	}
	return strconv.FormatUint(uint64(*v), 10)
}

func (*float64Value) typeName() string { return "float" }

type float64Value float64

func (v *float64Value) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return numError(err)
	}
	*v = float64Value(f)
	return nil
}
func (v *float64Value) String() string {
	if v == nil {
		return "0"
	}
	return strconv.FormatFloat(float64(*v), 'g', -1, 64)
}

func (*boolValue) typeName() string { return "bool" }

type boolValue bool

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("want true or false, got %q", s)
	}
	*v = boolValue(b)
	return nil
}
func (v *boolValue) String() string {
	if v == nil {
		return "false"
	}
	return strconv.FormatBool(bool(*v))
}

// IsBoolFlag lets -name stand for -name=true.
func (v *boolValue) IsBoolFlag() bool { return true }

func (*durationValue) typeName() string { return "duration" }

type durationValue time.Duration

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as 500ms, 5s or 1h30m: %w", err)
	}
	*v = durationValue(d)
	return nil
}
func (v *durationValue) String() string {
	if v == nil {
		return "0s"
	}
	return time.Duration(*v).String()
}

func (*listValue) typeName() string { return "list" }

type listValue []string

func (v *listValue) Set(s string) error {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	*v = out
	return nil
}
func (v *listValue) String() string {
	if v == nil {
		return ""
	}
	return strings.Join(*v, ",")
}

// secretValue hides the value of a secret from -help and anything else that prints the flag.
type secretValue struct{ flag.Value }

func (v *secretValue) typeName() string {
	if v == nil {
		return "value"
	}
	if t, ok := v.Value.(typed); ok {
		return t.typeName()
	}
	return "value"
}

func (v *secretValue) String() string {
	if v == nil || v.Value == nil || v.Value.String() == "" {
		return ""
	}
	return "<redacted>"
}

func numError(err error) error {
	if ne, ok := err.(*strconv.NumError); ok {
		if errors.Is(ne.Err, strconv.ErrRange) {
			return errors.New("value out of range")
		}
		return fmt.Errorf("not a number: %q", ne.Num)
	}
	return err
}
