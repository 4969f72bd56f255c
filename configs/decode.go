package configs

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// decoder walks the YAML node tree alongside the Config type. Walking both
// at once is what lets every problem name its key: unknown keys are found
// against the struct's yaml tags, and each value is decoded (by yaml.v3)
// where its key path and position are known, even when a flow mapping puts
// several keys on one line.
type decoder struct {
	file string
	pos  map[string]position // key path → where the key (or list item) is written
	bad  map[string]bool     // key paths whose value could not be decoded
	errs Errors
	// steps is how many more nodes the walk may visit. Aliases let a small
	// file name the same subtree many times over ("billion laughs"), so the
	// walk is bounded by the file's size rather than by what it expands to.
	steps int
	// merging holds the mappings whose "<<" merge keys are being expanded,
	// to refuse a mapping that merges itself.
	merging map[*yaml.Node]bool
}

type position struct{ line, col int }

func newDecoder(file string, size int) *decoder {
	return &decoder{
		file:    file,
		pos:     map[string]position{},
		bad:     map[string]bool{},
		steps:   1024 + 4*size,
		merging: map[*yaml.Node]bool{},
	}
}

func (d *decoder) errorf(p position, key, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: p.line, col: p.col, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// where finds the position of key, or of its closest written ancestor when
// the key itself is absent (a required key that is missing).
func (d *decoder) where(key string) position {
	for ; key != ""; key = parent(key) {
		if p, ok := d.pos[key]; ok {
			return p
		}
	}
	return position{}
}

// parent strips the last step from a key path: services[1].name → services[1] → services.
func parent(key string) string {
	return key[:max(0, strings.LastIndexAny(key, ".["))]
}

// step counts one visited node and reports whether the walk may go on.
func (d *decoder) step(n *yaml.Node) bool {
	d.steps--
	if d.steps == -1 {
		d.errorf(at(n), "", "the document expands to too many values (aliases repeated too often)")
	}
	return d.steps >= 0
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// value decodes n into v, which is addressable; key is v's path.
func (d *decoder) value(n *yaml.Node, v reflect.Value, key string) {
	n = resolve(n)
	if !d.step(n) {
		return
	}
	t := v.Type()
	switch {
	case reflect.PointerTo(t).Implements(unmarshalerType):
		d.scalar(n, v, key)
	case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct:
		// An optional section (tls.acme): nil when absent.
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.structure(n, v.Elem(), key)
	case t.Kind() == reflect.Struct:
		d.structure(n, v, key)
	case t.Kind() == reflect.Map:
		d.mapping(n, v, key)
	case t.Kind() == reflect.Slice:
		d.sequence(n, v, key)
	default:
		d.scalar(n, v, key)
	}
}

func (d *decoder) scalar(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, key, "must be a single value, not %s", kindName(n))
		return
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		d.fail(n, key, "%s", scalarMessage(n, v.Type(), err))
	}
}

func (d *decoder) fail(n *yaml.Node, key, format string, args ...any) {
	d.bad[key] = true
	d.errorf(at(n), key, format, args...)
}

// scalarMessage words a decoding error for the reader of the file: the
// custom types' own messages, and plain words instead of yaml.v3's
// "cannot unmarshal !!str into int".
func scalarMessage(n *yaml.Node, t reflect.Type, err error) string {
	var te *yaml.TypeError
	switch {
	case reflect.PointerTo(t).Implements(unmarshalerType) && errors.As(err, &te):
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = stripLine(m)
		}
		return strings.Join(msgs, "; ")
	case t == reflect.TypeFor[time.Duration]():
		return fmt.Sprintf("%q is not a duration like 30s, 10m or 1h", n.Value)
	case t.Kind() == reflect.Bool:
		return fmt.Sprintf("%q is not true or false", n.Value)
	case t.Kind() == reflect.Int:
		return fmt.Sprintf("%q is not a whole number", n.Value)
	}
	return stripLine(strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n  "))
}

// stripLine drops yaml.v3's "line N: " prefix; the Error carries the line.
func stripLine(msg string) string {
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if _, m, ok := strings.Cut(rest, ": "); ok {
			return m
		}
	}
	return msg
}

func (d *decoder) structure(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, key, "must be a mapping of keys, not %s", kindName(n))
		return
	}
	fields, names := yamlFields(v.Type())
	for _, e := range d.entries(n, key) {
		name, path := e.key.Value, join(key, e.key.Value)
		i, ok := fields[name]
		if !ok {
			d.errorf(at(e.key), path, "unknown key%s", suggest(name, names))
			continue
		}
		if isNull(e.val) {
			continue // "key:" with no value leaves the key unset, defaults included
		}
		d.pos[path] = at(e.key)
		d.value(e.val, v.Field(i), path)
	}
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, key, "must be a mapping of keys, not %s", kindName(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	for _, e := range d.entries(n, key) {
		path := key + "." + e.key.Value
		d.pos[path] = at(e.key)
		if isNull(e.val) {
			d.fail(e.key, path, "missing value")
			continue
		}
		elem := reflect.New(v.Type().Elem()).Elem()
		before := len(d.errs)
		d.value(e.val, elem, path)
		if len(d.errs) == before { // a bad value is left out rather than kept as zero
			v.SetMapIndex(reflect.ValueOf(e.key.Value), elem)
		}
	}
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, key, "must be a list, not %s", kindName(n))
		return
	}
	// Every item keeps its index, bad or not, so that later errors name the
	// item the file shows. An empty list stays non-nil: "urls: []" is not
	// the same as no urls key.
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		if !d.step(item) {
			break
		}
		path := fmt.Sprintf("%s[%d]", key, i)
		d.pos[path] = at(item)
		if isNull(item) {
			d.fail(item, path, "empty list item")
			continue
		}
		d.value(item, s.Index(i), path)
	}
	v.Set(s)
}

type entry struct{ key, val *yaml.Node }

// entries lists a mapping's key/value pairs, refusing keys written twice
// and expanding YAML merge keys ("<<: *base"), whose pairs the mapping's own
// keys override.
func (d *decoder) entries(n *yaml.Node, key string) []entry {
	var own, merged []entry
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content) && d.step(n.Content[i]); i += 2 {
		k, val := resolve(n.Content[i]), n.Content[i+1]
		switch {
		case k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge":
			merged = append(merged, d.merge(val, key)...)
		case k.Kind != yaml.ScalarNode:
			d.errorf(at(k), key, "a key must be a name, not %s", kindName(k))
		case seen[k.Value] != nil:
			d.errorf(at(k), join(key, k.Value), "key already set at line %d", seen[k.Value].Line)
		default:
			seen[k.Value] = k
			own = append(own, entry{k, val})
		}
	}
	var out []entry
	for _, e := range merged {
		if seen[e.key.Value] == nil { // the first merged mapping wins, as YAML specifies
			seen[e.key.Value] = e.key
			out = append(out, e)
		}
	}
	return append(out, own...)
}

// merge returns the pairs a merge key's value contributes: one mapping or a
// list of them.
func (d *decoder) merge(n *yaml.Node, key string) []entry {
	n = resolve(n)
	if !d.step(n) {
		return nil
	}
	maps := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		maps = n.Content
	}
	var out []entry
	for _, m := range maps {
		m = resolve(m)
		switch {
		case m.Kind != yaml.MappingNode:
			d.errorf(at(m), join(key, "<<"), "can merge only a mapping or a list of mappings, not %s", kindName(m))
		case d.merging[m]:
			d.errorf(at(m), join(key, "<<"), "a mapping cannot merge itself")
		default:
			d.merging[m] = true
			out = append(out, d.entries(m, key)...)
			delete(d.merging, m)
		}
	}
	return out
}

// yamlFields maps each yaml key of struct type t to its field index; names
// lists the keys for suggestions.
func yamlFields(t reflect.Type) (fields map[string]int, names []string) {
	fields = map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = i
		names = append(names, name)
	}
	return fields, names
}

func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func at(n *yaml.Node) position { return position{n.Line, n.Column} }

func join(key, name string) string {
	if key == "" {
		return name
	}
	return key + "." + name
}

func kindName(n *yaml.Node) string {
	switch resolve(n).Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "a single value"
}

// suggest returns ` (did you mean "x"?)` for the candidate closest to name,
// or "" when none is close enough to be a likely typo.
func suggest(name string, candidates []string) string {
	best, bestDist := "", max(1, len(name)/3)+1
	for _, c := range candidates {
		if abs(len(name)-len(c)) >= bestDist {
			continue // the distance is at least the difference in length
		}
		if d := editDistance(name, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the optimal-string-alignment distance between a and b:
// the insertions, deletions, substitutions and swaps of neighbouring bytes
// that turn one into the other ("ldpas" is 1 from "ldaps").
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

func abs(n int) int { return max(n, -n) }
