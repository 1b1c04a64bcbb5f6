package predictlink

import (
	"hash/fnv"
	"sort"
	"strconv"
)

// Ring is a consistent-hash ring: each endpoint owns many points, a symbol belongs to the first
// point at or after its hash whose endpoint is healthy. When an endpoint fails only its symbols move,
// and they come back when it recovers, so each symbol's feature state lives in one place at a time.
type Ring struct {
	points []uint64
	owner  []int
}

func hash64(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	// fnv alone clusters similar keys ("EURUSD#1", "EURUSD#2"); a 64-bit finaliser spreads them.
	x := h.Sum64()
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// NewRing places vnodes points per endpoint, keyed by the endpoint's address so that the layout
// does not depend on the order endpoints are listed in.
func NewRing(endpoints []string, vnodes int) *Ring {
	if vnodes < 1 {
		vnodes = 1
	}
	type pt struct {
		h uint64
		o int
	}
	pts := make([]pt, 0, len(endpoints)*vnodes)
	for i, ep := range endpoints {
		for v := range vnodes {
			pts = append(pts, pt{hash64(ep + "#" + strconv.Itoa(v)), i})
		}
	}
	sort.Slice(pts, func(a, b int) bool { return pts[a].h < pts[b].h })
	r := &Ring{points: make([]uint64, len(pts)), owner: make([]int, len(pts))}
	for i, p := range pts {
		r.points[i], r.owner[i] = p.h, p.o
	}
	return r
}

// Lookup returns the endpoint index owning key among those healthy says are up, or -1.
func (r *Ring) Lookup(key string, healthy func(int) bool) int {
	if len(r.points) == 0 {
		return -1
	}
	h := hash64(key)
	start := sort.Search(len(r.points), func(i int) bool { return r.points[i] >= h })
	tried := map[int]bool{}
	for k := range len(r.points) {
		o := r.owner[(start+k)%len(r.points)]
		if tried[o] {
			continue
		}
		if healthy(o) {
			return o
		}
		tried[o] = true
	}
	return -1
}
