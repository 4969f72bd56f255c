//go:build !race

package per

const raceEnabled = false
