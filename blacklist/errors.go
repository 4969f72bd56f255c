package blacklist

import "errors"

// Errors returned by the admin methods, wrapped with the address or network
// they concern; test them with errors.Is.
var (
	// ErrInvalid: the address or network is not valid.
	ErrInvalid = errors.New("blacklist: not a valid address or network")
	// ErrExists: the entry is already there.
	ErrExists = errors.New("blacklist: entry exists")
	// ErrNotFound: there is no such entry.
	ErrNotFound = errors.New("blacklist: no such entry")
	// ErrFromConfig: the entry comes from the configuration file and can only
	// be changed there.
	ErrFromConfig = errors.New("blacklist: entry comes from the configuration file; change it there")
	// ErrCovered: the address stays blocked by a wider manual entry.
	ErrCovered = errors.New("blacklist: still blocked by a wider manual entry")
)
