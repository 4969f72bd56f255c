//go:build race

package per

// raceEnabled: the race detector allocates on its own account, so
// allocation counts are only meaningful without it.
const raceEnabled = true
