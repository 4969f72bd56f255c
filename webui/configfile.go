package webui

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gatehouse-pbx/gatehouse/configs"
)

// ConfigError is one problem in a submitted configuration, as the API
// returns it (422) and the configuration page lists it.
type ConfigError struct {
	Line    int    `json:"line"` // 0 when the problem has no line
	Key     string `json:"key"`  // "" for the whole file
	Message string `json:"message"`
}

// errNoFile: the running configuration was not loaded from a file, so
// there is nowhere to save a new one.
var errNoFile = errors.New("the running configuration has no file to save to")

// checkConfig parses data as the configuration file would be read: relative
// paths against its directory, certificates loaded. It returns the parsed
// configuration, or the problems found.
func (s *Server) checkConfig(data []byte) (*configs.Config, []ConfigError) {
	cur := s.cfg.Load()
	next, err := configs.Parse(cur.File, data)
	if err == nil {
		return next, nil
	}
	var errs configs.Errors
	if !errors.As(err, &errs) {
		return nil, []ConfigError{{Message: err.Error()}}
	}
	out := make([]ConfigError, len(errs))
	for i, e := range errs {
		out[i] = ConfigError{Line: e.Line, Key: e.Key, Message: e.Msg}
	}
	return nil, out
}

// applyConfig checks data, applies it through the reload path and saves it
// over the configuration file, keeping admin.backups earlier versions. When
// the data has problems they are returned and nothing changes; when
// applying or saving fails, err says why and the running configuration and
// the file are as they were.
func (s *Server) applyConfig(data []byte, user string) (problems []ConfigError, err error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	cur := s.cfg.Load()
	if cur.File == "" {
		return nil, errNoFile
	}
	if s.opts.Apply == nil {
		return nil, errors.New("applying configurations is not enabled")
	}
	next, problems := s.checkConfig(data)
	if problems != nil {
		return problems, nil
	}
	old, err := os.ReadFile(cur.File)
	if err != nil {
		return nil, fmt.Errorf("reading the current file: %w", err)
	}
	perm := fs.FileMode(0o600)
	if fi, err := os.Stat(cur.File); err == nil {
		perm = fi.Mode().Perm()
	}
	// The new version goes to disk before it is applied, so that a full
	// disk or a read-only file is found while nothing has changed yet.
	tmp, err := writeTemp(cur.File, data, perm)
	if err != nil {
		return nil, fmt.Errorf("saving %s: %w", cur.File, err)
	}
	defer os.Remove(tmp) // a no-op once renamed
	if err := s.opts.Apply(next); err != nil {
		return nil, fmt.Errorf("applying: %w (nothing changed)", err)
	}
	if err := rotateBackups(cur.File, old, perm, next.Admin.Backups); err != nil {
		s.log.Warn("configuration backup failed", "config", cur.File, "err", err)
	}
	if err := os.Rename(tmp, cur.File); err != nil {
		// The file could not be replaced: go back to what it says.
		if rerr := s.opts.Apply(cur); rerr != nil {
			s.log.Error("restoring the previous configuration failed", "config", cur.File, "err", rerr)
		}
		return nil, fmt.Errorf("saving %s: %w (the previous configuration is back in force)", cur.File, err)
	}
	s.log.Info("configuration applied from the admin UI", "config", cur.File, "user", user, "services", len(next.Services))
	return nil, nil
}

// writeTemp writes data to a synced temporary file next to name, for a rename.
func writeTemp(name string, data []byte, perm fs.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".new*")
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// rotateBackups keeps old, the version being replaced, as name.1, moving
// name.1 to name.2 and so on up to keep versions. Each backup is written
// whole before it replaces anything, and the configuration file itself is
// never moved, so it exists at every moment.
func rotateBackups(name string, old []byte, perm fs.FileMode, keep int) error {
	if keep <= 0 {
		return nil
	}
	os.Remove(fmt.Sprintf("%s.%d", name, keep))
	for i := keep - 1; i >= 1; i-- {
		err := os.Rename(fmt.Sprintf("%s.%d", name, i), fmt.Sprintf("%s.%d", name, i+1))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return writeFileAtomic(name+".1", old, perm)
}

// Backup is an earlier version of the configuration file kept by
// applyConfig: FILE.1 is the latest.
type Backup struct {
	Number   int       `json:"number"`
	Modified time.Time `json:"modified"` // when it was replaced
	Size     int64     `json:"size"`
}

// backups lists the backups of the running file that exist, latest first.
func (s *Server) backups() []Backup {
	cfg := s.cfg.Load()
	out := []Backup{}
	if cfg.File == "" {
		return out
	}
	for i := 1; i <= max(cfg.Admin.Backups, 1); i++ {
		fi, err := os.Stat(fmt.Sprintf("%s.%d", cfg.File, i))
		if err != nil {
			continue
		}
		out = append(out, Backup{Number: i, Modified: fi.ModTime(), Size: fi.Size()})
	}
	return out
}

// readConfig reads the running file (backup 0) or one of its backups.
func (s *Server) readConfig(backup string) ([]byte, error) {
	file := s.cfg.Load().File
	if file == "" {
		return nil, errNoFile
	}
	if backup == "" || backup == "0" {
		return os.ReadFile(file)
	}
	n, err := strconv.Atoi(backup)
	if err != nil || n < 1 || n > 1000 {
		return nil, errBadBackup
	}
	data, err := os.ReadFile(fmt.Sprintf("%s.%d", file, n))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errBadBackup
	}
	return data, err
}

// errBadBackup: no backup of that number.
var errBadBackup = errors.New("no such backup of the configuration file")
