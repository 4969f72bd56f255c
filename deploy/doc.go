// Package deploy holds what turns gatehouse into a DMZ appliance and the
// checks that keep it working: the systemd unit and sysusers file under
// systemd/, and, in the repository root, the Dockerfile and the example
// configurations in configs/examples. It has no code; its tests build the
// static binary the way `make build` and the Dockerfile do, and check the
// binary, the examples, the unit and the Dockerfile against one another, so
// that `make test` (CI) catches packaging that drifted from the program.
// The guide for administrators is docs/deploy.md.
package deploy
