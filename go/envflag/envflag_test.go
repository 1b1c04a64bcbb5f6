package envflag

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// values is one destination of every type, with non-zero defaults.
type values struct {
	S  string
	I  int
	I6 int64
	U  uint32
	F  float64
	B  bool
	D  time.Duration
	L  []string
}

func defaults() values {
	return values{S: "a", I: 1, I6: 2, U: 3, F: 0.5, B: true, D: time.Second, L: []string{"x", "y"}}
}

func newSet(v *values) *Set {
	s := New("test", "KAIROS_TEST_")
	s.FlagSet().SetOutput(&bytes.Buffer{})
	s.StringVar(&v.S, "str", "a string")
	s.IntVar(&v.I, "int", "an int")
	s.Int64Var(&v.I6, "int64", "an int64")
	s.Uint32Var(&v.U, "uint32", "a uint32")
	s.Float64Var(&v.F, "float", "a float")
	s.BoolVar(&v.B, "bool", "a bool")
	s.DurationVar(&v.D, "dur", "a duration")
	s.ListVar(&v.L, "list", "a list")
	return s
}

func TestPrecedenceFlagOverEnvironmentOverDefault(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want func(*values)
	}{
		{"defaults", nil, nil, func(*values) {}},
		{"empty variables count as unset", nil, map[string]string{"KAIROS_TEST_STR": "", "KAIROS_TEST_INT": ""}, func(*values) {}},
		{"string env", nil, map[string]string{"KAIROS_TEST_STR": "e"}, func(v *values) { v.S = "e" }},
		{"string flag wins", []string{"-str", "f"}, map[string]string{"KAIROS_TEST_STR": "e"}, func(v *values) { v.S = "f" }},
		{"string flag may set empty", []string{"--str="}, map[string]string{"KAIROS_TEST_STR": "e"}, func(v *values) { v.S = "" }},
		{"int env", nil, map[string]string{"KAIROS_TEST_INT": "7"}, func(v *values) { v.I = 7 }},
		{"int flag wins", []string{"-int=8"}, map[string]string{"KAIROS_TEST_INT": "7"}, func(v *values) { v.I = 8 }},
		{"int64 env", nil, map[string]string{"KAIROS_TEST_INT64": "-9000000000"}, func(v *values) { v.I6 = -9000000000 }},
		{"uint32 env", nil, map[string]string{"KAIROS_TEST_UINT32": "4294967295"}, func(v *values) { v.U = 4294967295 }},
		{"float env", nil, map[string]string{"KAIROS_TEST_FLOAT": "0.25"}, func(v *values) { v.F = 0.25 }},
		{"bool env", nil, map[string]string{"KAIROS_TEST_BOOL": "false"}, func(v *values) { v.B = false }},
		{"bool flag alone is true", []string{"-bool"}, map[string]string{"KAIROS_TEST_BOOL": "false"}, func(v *values) { v.B = true }},
		{"bool flag false wins", []string{"-bool=false"}, map[string]string{"KAIROS_TEST_BOOL": "true"}, func(v *values) { v.B = false }},
		{"duration env", nil, map[string]string{"KAIROS_TEST_DUR": "1m30s"}, func(v *values) { v.D = 90 * time.Second }},
		{"duration flag wins", []string{"-dur", "500ms"}, map[string]string{"KAIROS_TEST_DUR": "1m"}, func(v *values) { v.D = 500 * time.Millisecond }},
		{"list env trimmed, empties dropped", nil, map[string]string{"KAIROS_TEST_LIST": " a, ,b ,"}, func(v *values) { v.L = []string{"a", "b"} }},
		{"list flag replaces", []string{"-list", "c"}, nil, func(v *values) { v.L = []string{"c"} }},
		{"list flag empty clears", []string{"-list="}, nil, func(v *values) { v.L = nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := defaults()
			if err := newSet(&got).Parse(tc.args, env(tc.env)); err != nil {
				t.Fatal(err)
			}
			want := defaults()
			tc.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestBadEnvironmentValuesNameTheVariableAndValue(t *testing.T) {
	tests := []struct {
		variable, value string
	}{
		{"KAIROS_TEST_INT", "many"},
		{"KAIROS_TEST_INT64", "1.5"},
		{"KAIROS_TEST_UINT32", "4294967296"},
		{"KAIROS_TEST_UINT32", "-1"},
		{"KAIROS_TEST_FLOAT", "half"},
		{"KAIROS_TEST_BOOL", "yes please"},
		{"KAIROS_TEST_DUR", "5"},
	}
	for _, tc := range tests {
		t.Run(tc.variable+"="+tc.value, func(t *testing.T) {
			v := defaults()
			err := newSet(&v).Parse(nil, env(map[string]string{tc.variable: tc.value}))
			if err == nil {
				t.Fatal("accepted")
			}
			if want := fmt.Sprintf("%s=%q", tc.variable, tc.value); !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not contain %s", err, want)
			}
		})
	}
}

func TestBadEnvironmentValueIsIgnoredWhenTheFlagIsGiven(t *testing.T) {
	v := defaults()
	if err := newSet(&v).Parse([]string{"-int", "5"}, env(map[string]string{"KAIROS_TEST_INT": "many"})); err != nil || v.I != 5 {
		t.Fatalf("I=%d err=%v", v.I, err)
	}
}

func TestEveryBadVariableIsReported(t *testing.T) {
	v := defaults()
	err := newSet(&v).Parse(nil, env(map[string]string{"KAIROS_TEST_INT": "x", "KAIROS_TEST_DUR": "y"}))
	if err == nil || !strings.Contains(err.Error(), "KAIROS_TEST_INT") || !strings.Contains(err.Error(), "KAIROS_TEST_DUR") {
		t.Fatalf("error %v does not name both variables", err)
	}
}

func TestBadFlagValuesAreErrors(t *testing.T) {
	for _, args := range [][]string{{"-int", "x"}, {"-uint32", "-1"}, {"-dur", "1"}, {"-bool=maybe"}, {"-nosuch"}} {
		v := defaults()
		if err := newSet(&v).Parse(args, env(nil)); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func TestHelpIsErrHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}} {
		v := defaults()
		if err := newSet(&v).Parse(args, env(nil)); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%v: %v, want flag.ErrHelp", args, err)
		}
	}
}

// failing is a Value whose Set always fails, to see what an error about a secret prints.
type failing struct{ s string }

func (f *failing) String() string {
	if f == nil {
		return ""
	}
	return f.s
}
func (f *failing) Set(v string) error { return fmt.Errorf("cannot use %q", v) }

func TestSecretsAreNeverPrinted(t *testing.T) {
	s := New("test", "KAIROS_TEST_")
	var out bytes.Buffer
	s.FlagSet().SetOutput(&out)
	token := "default-secret"
	s.StringVar(&token, "token", "bearer token", Secret())
	bad := &failing{s: "other-secret"}
	s.Var(bad, "password", "a password", Secret())
	err := s.Parse(nil, env(map[string]string{"KAIROS_TEST_PASSWORD": "hunter2"}))
	if err == nil || !strings.Contains(err.Error(), "KAIROS_TEST_PASSWORD") {
		t.Fatalf("error %v does not name the variable", err)
	}
	if err := s.Parse([]string{"-h"}, env(nil)); !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	printed := err.Error() + out.String() + fmt.Sprint(s.Settings())
	for _, secret := range []string{"hunter2", "default-secret", "other-secret"} {
		if strings.Contains(printed, secret) {
			t.Errorf("%q printed:\n%s", secret, printed)
		}
	}
	if st, _ := s.Lookup("token"); !st.Secret || st.Default != "" {
		t.Errorf("token setting %+v", st)
	}
	if token != "default-secret" {
		t.Errorf("the secret's value changed: %q", token)
	}
}

func TestEnvAndNoEnvOptions(t *testing.T) {
	s := New("test", "KAIROS_TEST_")
	addr, reason := "a", "r"
	s.StringVar(&addr, "addr", "address", Env("KAIROS_OTHER_GRPC_ADDR"))
	s.StringVar(&reason, "reason", "reason", NoEnv())
	err := s.Parse(nil, env(map[string]string{"KAIROS_OTHER_GRPC_ADDR": "b", "KAIROS_TEST_ADDR": "c", "KAIROS_TEST_REASON": "x"}))
	if err != nil || addr != "b" || reason != "r" {
		t.Fatalf("addr=%q reason=%q err=%v", addr, reason, err)
	}
	if st, _ := s.Lookup("reason"); st.Env != "" {
		t.Errorf("reason reads %s", st.Env)
	}
}

func TestSettingsEnumerateEveryFlagWithItsVariableAndDefault(t *testing.T) {
	v := defaults()
	got := newSet(&v).Settings()
	want := []Setting{
		{Name: "str", Env: "KAIROS_TEST_STR", Default: "a", Usage: "a string"},
		{Name: "int", Env: "KAIROS_TEST_INT", Default: "1", Usage: "an int"},
		{Name: "int64", Env: "KAIROS_TEST_INT64", Default: "2", Usage: "an int64"},
		{Name: "uint32", Env: "KAIROS_TEST_UINT32", Default: "3", Usage: "a uint32"},
		{Name: "float", Env: "KAIROS_TEST_FLOAT", Default: "0.5", Usage: "a float"},
		{Name: "bool", Env: "KAIROS_TEST_BOOL", Default: "true", Usage: "a bool"},
		{Name: "dur", Env: "KAIROS_TEST_DUR", Default: "1s", Usage: "a duration"},
		{Name: "list", Env: "KAIROS_TEST_LIST", Default: "x,y", Usage: "a list"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestHelpNamesTypesVariablesAndNonZeroDefaults(t *testing.T) {
	var v values
	s := newSet(&v)
	var out bytes.Buffer
	s.FlagSet().SetOutput(&out)
	v2 := "x"
	s.StringVar(&v2, "named", "a `path` to read")
	_ = s.Parse([]string{"-h"}, env(nil))
	text := out.String()
	for _, want := range []string{
		"Usage of test:\n",
		"  -str string\n    \ta string (env KAIROS_TEST_STR)\n",
		"  -uint32 uint32\n",
		"  -dur duration\n",
		"  -list list\n",
		"  -bool\n    \ta bool (env KAIROS_TEST_BOOL)\n",
		"  -named path\n    \ta path to read (env KAIROS_TEST_NAMED) (default \"x\")\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("help lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "(default") && strings.Count(text, "(default") != 1 {
		t.Errorf("zero defaults printed:\n%s", text)
	}
}

func TestEnvName(t *testing.T) {
	for _, tc := range []struct{ prefix, flag, want string }{
		{"KAIROS_COLLECTOR_", "grpc-addr", "KAIROS_COLLECTOR_GRPC_ADDR"},
		{"KAIROS_EXECUTION_", "max-order-qty", "KAIROS_EXECUTION_MAX_ORDER_QTY"},
		{"P_", "a.b", "P_A_B"},
	} {
		if got := EnvName(tc.prefix, tc.flag); got != tc.want {
			t.Errorf("EnvName(%q, %q) = %q, want %q", tc.prefix, tc.flag, got, tc.want)
		}
	}
}
