//go:build chaos && !race

package chaos_test

const raceBuild = false
