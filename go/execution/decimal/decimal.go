// Package decimal is the fixed-point number every price, quantity and amount of money in the
// execution service is held in: an int64 count of 10^-scale units, as kairos.types.v1.Decimal is on
// the wire. Nothing in the domain is a binary float, so limits, P&L and journal replay are exact.
package decimal

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"strconv"
	"strings"

	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
)

// MaxScale is the largest number of decimal places a Decimal may carry (10^18 fits an int64).
const MaxScale = 18

// Sentinel errors, wrapped with the offending text or value.
var (
	ErrScale     = errors.New("decimal: scale out of range 0..18")
	ErrSyntax    = errors.New("decimal: invalid syntax")
	ErrOverflow  = errors.New("decimal: value out of range")
	ErrNotFinite = errors.New("decimal: not a finite number")
)

var pow10 = func() [MaxScale + 1]int64 {
	var p [MaxScale + 1]int64
	p[0] = 1
	for i := 1; i <= MaxScale; i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// Pow10 returns 10^n for n in 0..18.
func Pow10(n uint8) int64 { return pow10[n] }

// D is a fixed-point decimal: value = Units × 10^-Scale. The zero value is the number zero.
type D struct {
	units int64
	scale uint8
}

// Zero is the number zero.
var Zero = D{}

// New returns units × 10^-scale; it panics on a scale above MaxScale, which is a programming error.
func New(units int64, scale uint8) D {
	if scale > MaxScale {
		panic(fmt.Sprintf("decimal.New: scale %d > %d", scale, MaxScale))
	}
	return D{units: units, scale: scale}
}

// FromInt returns the integer n.
func FromInt(n int64) D { return D{units: n} }

// Units returns the raw units.
func (d D) Units() int64 { return d.units }

// Scale returns the number of decimal places.
func (d D) Scale() uint8 { return d.scale }

// FromProto converts the wire form, refusing scales above 18.
func FromProto(p *typesv1.Decimal) (D, error) {
	if p == nil {
		return Zero, nil
	}
	if p.GetScale() > MaxScale {
		return Zero, fmt.Errorf("%w: scale %d", ErrScale, p.GetScale())
	}
	return D{units: p.GetUnits(), scale: uint8(p.GetScale())}, nil
}

// Proto returns the wire form.
func (d D) Proto() *typesv1.Decimal {
	return &typesv1.Decimal{Units: d.units, Scale: uint32(d.scale)}
}

// Parse reads a plain decimal such as "-1.23450"; the scale is the number of digits after the point.
func Parse(s string) (D, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return Zero, fmt.Errorf("%w: empty", ErrSyntax)
	}
	neg := false
	switch t[0] {
	case '-':
		neg, t = true, t[1:]
	case '+':
		t = t[1:]
	}
	intPart, frac, hasPoint := strings.Cut(t, ".")
	if intPart == "" && frac == "" || hasPoint && frac == "" && intPart == "" {
		return Zero, fmt.Errorf("%w: %q", ErrSyntax, s)
	}
	if len(frac) > MaxScale {
		return Zero, fmt.Errorf("%w: %q has more than %d decimals", ErrScale, s, MaxScale)
	}
	for _, part := range []string{intPart, frac} {
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return Zero, fmt.Errorf("%w: %q", ErrSyntax, s)
			}
		}
	}
	digits := intPart + frac
	if digits == "" {
		digits = "0"
	}
	u, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return Zero, fmt.Errorf("%w: %q", ErrOverflow, s)
	}
	if neg {
		u = -u
	}
	return D{units: u, scale: uint8(len(frac))}, nil
}

// MustParse is Parse for constants in tests and defaults; it panics on bad input.
func MustParse(s string) D {
	d, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return d
}

// FromFloat converts a float quote (ticks arrive as doubles, as MT5 delivers them) to scale
// decimals, rounding half away from zero. It is used only at the market-data boundary.
func FromFloat(f float64, scale uint8) (D, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return Zero, fmt.Errorf("%w: %v", ErrNotFinite, f)
	}
	if scale > MaxScale {
		return Zero, fmt.Errorf("%w: %d", ErrScale, scale)
	}
	v := math.Round(f * float64(pow10[scale]))
	if v >= math.MaxInt64 || v <= math.MinInt64 {
		return Zero, fmt.Errorf("%w: %v", ErrOverflow, f)
	}
	return D{units: int64(v), scale: scale}, nil
}

// Float returns the nearest float64, for metrics and logs only.
func (d D) Float() float64 { return float64(d.units) / float64(pow10[d.scale]) }

// String formats with exactly Scale decimals.
func (d D) String() string {
	if d.scale == 0 {
		return strconv.FormatInt(d.units, 10)
	}
	neg := d.units < 0
	u := uint64(d.units)
	if neg {
		u = -u
	}
	s := strconv.FormatUint(u, 10)
	if len(s) <= int(d.scale) {
		s = strings.Repeat("0", int(d.scale)-len(s)+1) + s
	}
	out := s[:len(s)-int(d.scale)] + "." + s[len(s)-int(d.scale):]
	if neg {
		return "-" + out
	}
	return out
}

// Sign returns -1, 0 or +1.
func (d D) Sign() int {
	switch {
	case d.units < 0:
		return -1
	case d.units > 0:
		return 1
	}
	return 0
}

// IsZero reports whether d is zero at any scale.
func (d D) IsZero() bool { return d.units == 0 }

// Neg returns -d.
func (d D) Neg() D { return D{units: -d.units, scale: d.scale} }

// Abs returns |d|.
func (d D) Abs() D {
	if d.units < 0 {
		return d.Neg()
	}
	return d
}

// mul64 multiplies with an overflow check.
func mul64(a, b int64) (int64, bool) {
	if a == 0 || b == 0 {
		return 0, true
	}
	c := a * b
	if c/b != a || (a == -1 && b == math.MinInt64) || (b == -1 && a == math.MinInt64) {
		return 0, false
	}
	return c, true
}

// Rescale returns d with exactly s decimals. Going up is exact (ok false on overflow); going down
// is exact only when the dropped digits are zero (ok false otherwise).
func (d D) Rescale(s uint8) (D, bool) {
	if s > MaxScale {
		return Zero, false
	}
	switch {
	case s == d.scale:
		return d, true
	case s > d.scale:
		u, ok := mul64(d.units, pow10[s-d.scale])
		return D{units: u, scale: s}, ok
	default:
		p := pow10[d.scale-s]
		if d.units%p != 0 {
			return Zero, false
		}
		return D{units: d.units / p, scale: s}, true
	}
}

// Round returns d rounded half away from zero to s decimals (s below the current scale) or exactly
// rescaled (s above it; saturating on overflow, which bounded inputs never reach).
func (d D) Round(s uint8) D {
	if s >= d.scale {
		r, ok := d.Rescale(s)
		if !ok {
			return d.saturate(s)
		}
		return r
	}
	p := pow10[d.scale-s]
	q, r := d.units/p, d.units%p
	if 2*abs64(r) >= p {
		if d.units < 0 {
			q--
		} else {
			q++
		}
	}
	return D{units: q, scale: s}
}

func (d D) saturate(s uint8) D {
	if d.units < 0 {
		return D{units: math.MinInt64 + 1, scale: s}
	}
	return D{units: math.MaxInt64, scale: s}
}

func abs64(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// align brings a and b to a common scale; ok is false if that overflows.
func align(a, b D) (int64, int64, uint8, bool) {
	if a.scale == b.scale {
		return a.units, b.units, a.scale, true
	}
	s := max(a.scale, b.scale)
	ar, ok1 := a.Rescale(s)
	br, ok2 := b.Rescale(s)
	return ar.units, br.units, s, ok1 && ok2
}

// Cmp returns -1, 0 or +1 as a is less than, equal to or greater than b.
func (a D) Cmp(b D) int {
	au, bu, _, ok := align(a, b)
	if !ok {
		// One side is beyond int64 at the common scale, so it dominates in magnitude.
		return cmpWide(a, b)
	}
	switch {
	case au < bu:
		return -1
	case au > bu:
		return 1
	}
	return 0
}

func cmpWide(a, b D) int {
	// Compare a.units*10^(s-a.scale) with b.units*10^(s-b.scale) in 128-bit signed arithmetic.
	s := max(a.scale, b.scale)
	ah, al := mul128(a.units, pow10[s-a.scale])
	bh, bl := mul128(b.units, pow10[s-b.scale])
	if ah != bh {
		if ah < bh {
			return -1
		}
		return 1
	}
	switch {
	case al < bl:
		return -1
	case al > bl:
		return 1
	}
	return 0
}

// mul128 returns the signed 128-bit product of a and b (b >= 0) as (hi, lo).
func mul128(a, b int64) (int64, uint64) {
	neg := a < 0
	ua := uint64(a)
	if neg {
		ua = -ua
	}
	hi, lo := bits.Mul64(ua, uint64(b))
	if neg {
		lo = ^lo + 1
		hi = ^hi
		if lo == 0 {
			hi++
		}
	}
	return int64(hi), lo
}

// Equal reports numeric equality (1.0 equals 1.00).
func (a D) Equal(b D) bool { return a.Cmp(b) == 0 }

// Less reports a < b.
func (a D) Less(b D) bool { return a.Cmp(b) < 0 }

// Add returns a+b at the larger scale. Inputs are bounded at the service boundary (see
// validate in package risk), so overflow means corrupted state; it saturates rather than wraps.
func (a D) Add(b D) D {
	au, bu, s, ok := align(a, b)
	c := au + bu
	if !ok || (au > 0 && bu > 0 && c < 0) || (au < 0 && bu < 0 && c >= 0) {
		if a.Sign()+b.Sign() < 0 {
			return D{units: math.MinInt64 + 1, scale: s}
		}
		return D{units: math.MaxInt64, scale: s}
	}
	return D{units: c, scale: s}
}

// Sub returns a-b.
func (a D) Sub(b D) D { return a.Add(b.Neg()) }

// MulRound returns a×b rounded half away from zero to s decimals, with a 128-bit intermediate;
// it saturates when the result does not fit, which limit checks treat as "too large".
func (a D) MulRound(b D, s uint8) D {
	neg := (a.units < 0) != (b.units < 0)
	ua, ub := uint64(abs64(a.units)), uint64(abs64(b.units))
	hi, lo := bits.Mul64(ua, ub)
	from := int(a.scale) + int(b.scale)
	var q uint64
	switch {
	case from == int(s):
		if hi != 0 || lo > math.MaxInt64 {
			return satSign(neg, s)
		}
		q = lo
	case from > int(s):
		div := uint64(1)
		shift := from - int(s)
		// from can reach 36; divide in at most two steps of <= 18 digits.
		for shift > 0 {
			step := min(shift, MaxScale)
			div = uint64(pow10[step])
			if hi >= div {
				return satSign(neg, s)
			}
			var rem uint64
			lo, rem = bits.Div64(hi, lo, div)
			hi = 0
			shift -= step
			if shift == 0 && 2*rem >= div {
				lo++
			}
		}
		if lo > math.MaxInt64 {
			return satSign(neg, s)
		}
		q = lo
	default:
		if hi != 0 || lo > math.MaxInt64 {
			return satSign(neg, s)
		}
		r, ok := mul64(int64(lo), pow10[int(s)-from])
		if !ok {
			return satSign(neg, s)
		}
		q = uint64(r)
	}
	if neg {
		return D{units: -int64(q), scale: s}
	}
	return D{units: int64(q), scale: s}
}

// DivRound returns a/b rounded half away from zero to s decimals. It is off the hot path (average
// prices, margin), so it uses math/big for exactness; a zero divisor saturates.
func (a D) DivRound(b D, s uint8) D {
	if b.units == 0 {
		return satSign(a.units < 0, s)
	}
	// a/b at scale s = a.units * 10^(s + b.scale) / (b.units * 10^a.scale).
	num := new(big.Int).Mul(big.NewInt(a.units), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(s)+int64(b.scale)), nil))
	den := new(big.Int).Mul(big.NewInt(b.units), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(a.scale)), nil))
	neg := num.Sign()*den.Sign() < 0
	num.Abs(num)
	den.Abs(den)
	q, r := new(big.Int).QuoRem(num, den, new(big.Int))
	if r.Lsh(r, 1).Cmp(den) >= 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() {
		return satSign(neg, s)
	}
	if neg {
		q.Neg(q)
	}
	return D{units: q.Int64(), scale: s}
}

func satSign(neg bool, s uint8) D {
	if neg {
		return D{units: math.MinInt64 + 1, scale: s}
	}
	return D{units: math.MaxInt64, scale: s}
}

// Min returns the smaller of a and b.
func Min(a, b D) D {
	if a.Cmp(b) <= 0 {
		return a
	}
	return b
}

// Max returns the larger of a and b.
func Max(a, b D) D {
	if a.Cmp(b) >= 0 {
		return a
	}
	return b
}

// FitsScale reports whether d can be written with at most s decimals without losing digits.
func (d D) FitsScale(s uint8) bool {
	_, ok := d.Rescale(s)
	return ok || d.scale <= s
}

// IsMultipleOf reports whether d is an integer multiple of step (step > 0).
func (d D) IsMultipleOf(step D) bool {
	if step.units <= 0 {
		return false
	}
	du, su, _, ok := align(d, step)
	if !ok {
		return false
	}
	return du%su == 0
}

// Trim drops trailing zero decimals down to at least min decimals: 1.1234500 → 1.12345 (min 5).
func (d D) Trim(min uint8) D {
	for d.scale > min && d.units%10 == 0 {
		d.units /= 10
		d.scale--
	}
	return d
}
