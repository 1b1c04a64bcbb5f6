//go:build chaos && race

package chaos_test

// raceBuild: the suite runs under the race detector, so the service binary is built with it too.
const raceBuild = true
