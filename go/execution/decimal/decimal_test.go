package decimal

import (
	"errors"
	"math"
	"testing"
)

func TestParseAndStringRoundTrip(t *testing.T) {
	for _, s := range []string{"0", "1", "-1", "1.23450", "0.00001", "-0.10", "123456789.123456789"} {
		d, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		if d.String() != s {
			t.Errorf("Parse(%q).String() = %q", s, d.String())
		}
	}
}

func TestParseRefusesBadInput(t *testing.T) {
	for _, s := range []string{"", "NaN", "Inf", "1.2.3", "abc", "1e5", "-", ".", "1.0000000000000000000", "99999999999999999999"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted bad input", s)
		}
	}
}

func TestFromFloatRefusesNaNAndInf(t *testing.T) {
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, err := FromFloat(f, 5); !errors.Is(err, ErrNotFinite) {
			t.Errorf("FromFloat(%v) err = %v, want ErrNotFinite", f, err)
		}
	}
	d, err := FromFloat(1.121257, 5)
	if err != nil || d.String() != "1.12126" {
		t.Errorf("FromFloat(1.121257, 5) = %v, %v; want 1.12126 (half away from zero)", d, err)
	}
}

func TestArithmeticIsExact(t *testing.T) {
	a, b := MustParse("0.1"), MustParse("0.2")
	if got := a.Add(b); !got.Equal(MustParse("0.3")) {
		t.Errorf("0.1+0.2 = %s", got)
	}
	if got := MustParse("1.5").Sub(MustParse("2.25")); got.String() != "-0.75" {
		t.Errorf("1.5-2.25 = %s", got)
	}
	if got := MustParse("1.12345").MulRound(MustParse("100000"), 2); got.String() != "112345.00" {
		t.Errorf("1.12345×100000 = %s", got)
	}
	if got := MustParse("2").DivRound(MustParse("3"), 4); got.String() != "0.6667" {
		t.Errorf("2/3 = %s", got)
	}
	if got := MustParse("-2").DivRound(MustParse("3"), 4); got.String() != "-0.6667" {
		t.Errorf("-2/3 = %s", got)
	}
}

func TestMulRoundSaturatesInsteadOfWrapping(t *testing.T) {
	big := New(math.MaxInt64/2, 0)
	if got := big.MulRound(FromInt(4), 0); got.Units() != math.MaxInt64 {
		t.Errorf("overflow gave %s, want saturation", got)
	}
}

func TestCompareAcrossScales(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{{"1.0", "1.00", 0}, {"1.1", "1.09", 1}, {"-1", "0.5", -1}, {"0.000000000000000001", "0", 1}}
	for _, c := range cases {
		if got := MustParse(c.a).Cmp(MustParse(c.b)); got != c.want {
			t.Errorf("Cmp(%s, %s) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestStepAndScaleChecks(t *testing.T) {
	step := MustParse("0.01")
	if !MustParse("0.10").IsMultipleOf(step) || MustParse("0.015").IsMultipleOf(step) {
		t.Error("IsMultipleOf(0.01) wrong")
	}
	if !MustParse("1.10000").FitsScale(1) || MustParse("1.123456").FitsScale(5) {
		t.Error("FitsScale wrong")
	}
}
