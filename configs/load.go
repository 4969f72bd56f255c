package configs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads and parses the configuration file at path. On failure the
// error is Errors, listing every problem found.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		msg := err.Error()
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			msg = pe.Err.Error() // the path is already in Error.File
		}
		return nil, Errors{{File: path, Msg: msg}}
	}
	return Parse(path, data)
}

// Parse parses a configuration held in memory; file names it in errors and
// is the base for relative paths in it. Certificate, key and CA files are
// read. On failure the error is Errors, listing every problem found.
func Parse(file string, data []byte) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Errors{syntaxError(file, err)}
	}
	c := &Config{File: file}
	d := newDecoder(file, len(data))
	if len(doc.Content) > 0 && !isNull(doc.Content[0]) {
		d.value(doc.Content[0], reflect.ValueOf(c).Elem(), "")
	}
	c.resolvePaths(filepath.Dir(file))
	applyDefaults(c, func(key string) bool { _, ok := d.pos[key]; return ok })
	if d.steps >= 0 { // else the walk stopped part way, and the rest would be noise
		(&validator{c: c, d: d}).validate()
	}
	if len(d.errs) > 0 {
		return nil, d.errs.sorted()
	}
	c.byName = make(map[string]*Service, len(c.Services))
	for i := range c.Services {
		c.byName[FoldName(c.Services[i].Name)] = &c.Services[i]
	}
	return c, nil
}

// syntaxError turns yaml.v3's "yaml: line N: problem" into an Error.
func syntaxError(file string, err error) *Error {
	e := &Error{File: file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	if rest, ok := strings.CutPrefix(e.Msg, "line "); ok {
		if n, msg, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(n); err == nil {
				e.Line, e.Msg = line, msg
			}
		}
	}
	return e
}

// resolvePaths makes the file paths in c relative to dir, the configuration
// file's directory, so that a configuration means the same whatever
// directory gatehouse is started from.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for i := range c.TLS.Certificates {
		abs(&c.TLS.Certificates[i].Cert)
		abs(&c.TLS.Certificates[i].Key)
	}
	for i := range c.TLS.ClientCAs {
		abs(&c.TLS.ClientCAs[i])
	}
	for i := range c.TLS.TargetCAs {
		abs(&c.TLS.TargetCAs[i])
	}
	abs(&c.Admin.Cert)
	abs(&c.Admin.Key)
	abs(&c.Admin.StateDir)
	abs(&c.Blacklist.State)
	for i := range c.Agents.Accounts {
		abs(&c.Agents.Accounts[i].ClientCA)
	}
	abs(&c.Cluster.TLS.Cert)
	abs(&c.Cluster.TLS.Key)
	abs(&c.Cluster.TLS.CA)
	abs(&c.Cluster.NATS.Creds)
	abs(&c.Cluster.StoreDir)
}

// maxFileSize bounds a certificate, key or CA file; real ones are a few KiB.
const maxFileSize = 1 << 20

// readFile reads a certificate, key or CA file. Anything but a regular file
// of at most maxFileSize is refused, so that a path such as /dev/zero or a
// FIFO gives an error instead of a hang.
func readFile(name string) ([]byte, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New(name + " is not a regular file")
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err == nil && len(data) > maxFileSize {
		err = errors.New(name + " is too large for a certificate, key or CA file")
	}
	return data, err
}
