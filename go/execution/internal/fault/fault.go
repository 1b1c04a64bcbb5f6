//go:build !chaos

// Package fault is the fault-injection hook of the chaos suite (ADR 0055). Production builds
// compile Point to nothing; a binary built with the chaos build tag reads KAIROS_FAULT
// ("<point>:<n>") and kills its own process with SIGKILL the n-th time it reaches that point.
package fault

// Point marks a place where the chaos build can kill the process. It does nothing here.
func Point(string) {}

// Enabled reports whether fault injection is compiled in.
const Enabled = false
