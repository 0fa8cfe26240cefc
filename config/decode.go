package config

// The decoder reads YAML into a yaml.Node tree and walks it with reflection
// over the `yaml` struct tags, instead of letting yaml.v3 fill the structs.
// That way every value's line and column is known (for the checks that come
// after decoding too), every problem is collected instead of only the first,
// and unknown fields, duplicate keys and wrong kinds get messages that name
// the field by its path.

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// MaxFileSize is the largest config file accepted.
const MaxFileSize = 4 << 20

// maxNodeVisits bounds the work of one decode, so aliases that expand
// exponentially ("billion laughs") fail instead of running for ever.
const maxNodeVisits = 200000

// pos is a 1-based line and column.
type pos struct{ line, col int }

// positions records, for one decoded file, where each field path stands.
type positions struct {
	root pos
	val  map[string]pos  // the value node of a path
	key  map[string]pos  // the key node of a mapping entry
	null map[string]bool // paths given as null, which count as absent
	bad  map[string]bool // paths that failed to decode: later checks stay quiet
}

func newPositions() *positions {
	return &positions{
		root: pos{1, 1},
		val:  map[string]pos{},
		key:  map[string]pos{},
		null: map[string]bool{},
		bad:  map[string]bool{},
	}
}

// lookup finds the position of path or, failing that, of its nearest
// ancestor (so a missing field points at the mapping that lacks it). With
// atKey the key of a mapping entry is preferred to its value.
func (p *positions) lookup(path string, atKey bool) pos {
	if p == nil {
		return pos{}
	}
	for {
		if atKey {
			if q, ok := p.key[path]; ok {
				return q
			}
		}
		if q, ok := p.val[path]; ok {
			return q
		}
		if path == "" {
			return p.root
		}
		path = parentPath(path)
	}
}

// given reports whether path was written in the file with a non-null value.
// Without positions (a config built in code) nothing counts as given.
func (p *positions) given(path string) bool {
	if p == nil {
		return false
	}
	_, ok := p.val[path]
	return ok && !p.null[path]
}

// broken reports whether path or one of its ancestors failed to decode.
func (p *positions) broken(path string) bool {
	if p == nil {
		return false
	}
	for {
		if p.bad[path] {
			return true
		}
		if path == "" {
			return false
		}
		path = parentPath(path)
	}
}

// parentPath strips the last element of a path: "a.b[2]" -> "a.b",
// `a.ip["x.y"]` -> "a.ip", "a.b" -> "a", "a" -> "".
func parentPath(path string) string {
	if strings.HasSuffix(path, `"]`) {
		if i := strings.LastIndex(path, `["`); i >= 0 {
			return path[:i]
		}
	}
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

func fieldPath(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func indexPath(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

// keyPath is the path of a map entry: "ip.web", or `ip["my.net"]` when the
// key is not a plain word.
func keyPath(parent, key string) string {
	plain := key != ""
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			plain = false
			break
		}
	}
	if plain {
		return fieldPath(parent, key)
	}
	return parent + "[" + strconv.Quote(key) + "]"
}

type decoder struct {
	file   string
	pos    *positions
	errs   ErrorList
	visits int
	halted bool
	// merging holds the mappings whose pairs are being collected, so a
	// mapping that merges itself ("&x {<<: *x}") is caught at once.
	merging map[*yaml.Node]bool
}

// errAt records an error at node n.
func (d *decoder) errAt(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: n.Line, Col: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// fail records an error at n and marks path as not decoded.
func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.errAt(n, path, format, args...)
	d.pos.bad[path] = true
}

// spend counts one unit of work; false once the budget is gone.
func (d *decoder) spend(n *yaml.Node, path string) bool {
	if d.halted {
		return false
	}
	d.visits++
	if d.visits > maxNodeVisits {
		d.halted = true
		// At the outermost place known for path: deep inside, the node is
		// some anchor far from what the user wrote for path.
		p := d.pos.lookup(path, false)
		d.errs = append(d.errs, &Error{File: d.file, Line: p.line, Col: p.col, Path: path,
			Msg: fmt.Sprintf("document is too large (aliases expand to more than %d values)", maxNodeVisits)})
		d.pos.bad[path] = true
		return false
	}
	return true
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// decodeYAML parses data into out, recording positions. It returns every
// syntax, structure and type error; semantic checks come later.
func decodeYAML(file string, data []byte, out *Config) (*positions, ErrorList) {
	d := &decoder{file: file, pos: newPositions(), merging: map[*yaml.Node]bool{}}
	if len(data) > MaxFileSize {
		d.errs = append(d.errs, &Error{File: file, Msg: fmt.Sprintf("file is %d bytes, larger than the %d allowed", len(data), MaxFileSize)})
		d.pos.bad[""] = true
		return d.pos, d.errs
	}
	doc, extra, err := parseYAML(data)
	if err != nil {
		d.errs = append(d.errs, syntaxError(file, data, err))
		d.pos.bad[""] = true
		return d.pos, d.errs
	}
	if extra != nil {
		d.errAt(extra, "", "only one YAML document is allowed per file")
	}
	var root *yaml.Node
	if doc != nil && doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	if root == nil {
		return d.pos, d.errs // an empty file: the checks report what is missing
	}
	r := resolve(root)
	if r == nil || isNull(r) {
		// An empty document ("---"): yaml.v3 may place its null past the
		// end of the file, so missing fields point at 1:1.
		return d.pos, d.errs
	}
	if r.Kind != yaml.MappingNode {
		d.errAt(root, "", "want a mapping of fields (host:, networks:, …), got %s", describe(r))
		d.pos.bad[""] = true
		return d.pos, d.errs
	}
	d.pos.root = pos{root.Line, root.Column}
	d.value(root, reflect.ValueOf(out).Elem(), "")
	return d.pos, d.errs
}

// parseYAML reads the first document and reports whether another follows.
// yaml.v3 has panicked on hostile input in the past; a panic here is turned
// into an error so bad input never takes the agent down.
func parseYAML(data []byte) (doc, extra *yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			doc, extra, err = nil, nil, fmt.Errorf("yaml: parser failed: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var first yaml.Node
	if err := dec.Decode(&first); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	var second yaml.Node
	switch err := dec.Decode(&second); {
	case err == nil:
		return &first, &second, nil
	case errors.Is(err, io.EOF):
		return &first, nil, nil
	default:
		return nil, nil, err
	}
}

var yamlLineRE = regexp.MustCompile(`^line (\d+): `)

// syntaxError turns a yaml.v3 parse error into an Error. yaml.v3 reports
// lines inconsistently (0-based context marks, none at all on the first
// line), so the line is found again as the shortest prefix of the file
// that fails with the same message.
func syntaxError(file string, data []byte, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		msg = msg[len(m[0]):]
		if n, err := strconv.Atoi(m[1]); err == nil && n > 0 {
			line = n
		}
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines)*len(data) <= 16<<20 {
		end := 0
		for k := range lines {
			end += len(lines[k])
			_, _, perr := parseYAML(data[:end])
			if perr != nil && stripYAMLLine(perr.Error()) == msg {
				line = k + 1
				break
			}
		}
	}
	col := 1
	if line-1 < len(lines) {
		text := lines[line-1]
		trimmed := bytes.TrimLeft(text, " ")
		col = len(text) - len(trimmed) + 1
		if len(trimmed) > 0 && trimmed[0] == '\t' && strings.Contains(msg, "cannot start any token") {
			msg += " (a tab: YAML indents with spaces only)"
		}
	}
	return &Error{File: file, Line: line, Col: col, Msg: "invalid YAML: " + msg, err: err}
}

func stripYAMLLine(s string) string {
	s = strings.TrimPrefix(s, "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(s); m != nil {
		s = s[len(m[0]):]
	}
	return s
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node holds, for "want X, got Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "…"
		}
		return strconv.Quote(v)
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	default:
		return "an alias"
	}
}

var (
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	addrType            = reflect.TypeFor[netip.Addr]()
	prefixType          = reflect.TypeFor[netip.Prefix]()
	durationType        = reflect.TypeFor[Duration]()
)

// value decodes n into v; path names v in messages.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if !d.spend(n, path) {
		return
	}
	use := n
	if n = resolve(n); n == nil {
		d.fail(use, path, "alias names nothing")
		return
	}
	d.pos.val[path] = pos{use.Line, use.Column}
	if isNull(n) {
		d.pos.null[path] = true
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshalerType) {
		d.text(n, v, path)
		return
	}
	switch v.Kind() {
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "want a string, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.fail(n, path, "want true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		d.integer(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "want a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			ip := indexPath(path, i)
			if r := resolve(item); r != nil && isNull(r) {
				d.pos.val[ip] = pos{item.Line, item.Column}
				d.fail(item, ip, "empty list entry")
				continue
			}
			d.value(item, s.Index(i), ip)
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "want a mapping, got %s", describe(n))
			return
		}
		if v.Type().Key().Kind() != reflect.String {
			panic("config: map key of " + v.Type().String() + " is not a string")
		}
		m := reflect.MakeMap(v.Type())
		for _, p := range d.pairs(n, path) {
			kp := keyPath(path, p.name)
			d.pos.key[kp] = pos{p.key.Line, p.key.Column}
			e := reflect.New(v.Type().Elem()).Elem()
			d.value(p.val, e, kp)
			m.SetMapIndex(reflect.ValueOf(p.name).Convert(v.Type().Key()), e)
		}
		v.Set(m)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "want a mapping, got %s", describe(n))
			return
		}
		fields := structFields(v.Type())
		for _, p := range d.pairs(n, path) {
			fp := fieldPath(path, p.name)
			i, ok := fields.index[p.name]
			if !ok {
				d.errAt(p.key, keyPath(path, p.name), "unknown field %q%s", p.name, fields.hint(p.name))
				continue
			}
			d.pos.key[fp] = pos{p.key.Line, p.key.Column}
			d.value(p.val, v.Field(i), fp)
		}
	case reflect.Pointer:
		e := reflect.New(v.Type().Elem())
		d.value(n, e.Elem(), path)
		v.Set(e)
	default:
		panic("config: cannot decode into " + v.Type().String())
	}
}

// rangeHints are the documented ranges of integer fields, for messages
// about values too large for their Go type.
var rangeHints = map[string]string{
	"vni":        "1..16777215",
	"bind_port":  "1..65535",
	"vxlan_port": "1..65535",
	"mtu":        "68..65535",
}

// bigIntRE matches integers too large for yaml.v3's int, which it then
// resolves as floats.
var bigIntRE = regexp.MustCompile(`^[-+]?[0-9]+$`)

func rangeHintFor(path string) string {
	if r, ok := rangeHints[path[strings.LastIndexByte(path, '.')+1:]]; ok {
		return " " + r
	}
	return ""
}

func (d *decoder) integer(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float" && bigIntRE.MatchString(n.Value) {
			d.fail(n, path, "%s is out of range%s", n.Value, rangeHintFor(path))
			return
		}
		d.fail(n, path, "want an integer, got %s", describe(n))
		return
	}
	outOfRange := func() {
		d.fail(n, path, "%s is out of range%s", n.Value, rangeHintFor(path))
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if n.Decode(&i) != nil || v.OverflowInt(i) {
			outOfRange()
			return
		}
		v.SetInt(i)
	default:
		var u uint64
		if n.Decode(&u) != nil || v.OverflowUint(u) {
			outOfRange()
			return
		}
		v.SetUint(u)
	}
}

// text decodes a scalar through the value's UnmarshalText; the error's
// message becomes the message.
func (d *decoder) text(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "want %s, got %s", textNoun(v.Type()), describe(n))
		return
	}
	u := v.Addr().Interface().(encoding.TextUnmarshaler)
	if err := u.UnmarshalText([]byte(n.Value)); err != nil {
		d.fail(n, path, "%s", textErrMsg(v.Type(), n.Value, err))
	}
}

func textNoun(t reflect.Type) string {
	switch t {
	case addrType:
		return "an IP address"
	case prefixType:
		return "a CIDR prefix"
	case durationType:
		return "a duration"
	default:
		return "a string"
	}
}

// textErrMsg rewrites the errors of net/netip ("netip.ParsePrefix(…): …")
// into messages in our style; our own types' messages are used as they are.
func textErrMsg(t reflect.Type, val string, err error) string {
	var what string
	switch t {
	case addrType:
		what = "invalid IP address "
	case prefixType:
		what = "invalid CIDR "
	default:
		return err.Error()
	}
	reason := err.Error()
	if i := strings.LastIndex(reason, "): "); i >= 0 {
		reason = reason[i+3:]
	}
	if i := strings.Index(reason, " (at "); i >= 0 {
		reason = reason[:i]
	}
	switch reason {
	case "unable to parse IP":
		reason = ""
	case "no '/'":
		reason = ": missing /BITS (e.g. 10.1.0.0/16)"
	default:
		reason = ": " + reason
	}
	return what + strconv.Quote(val) + reason
}

type pair struct {
	key, val *yaml.Node
	name     string
}

// pairs lists a mapping's entries with merge keys ("<<: *defaults")
// applied: the mapping's own keys win over merged ones, earlier merged
// mappings over later. Duplicate keys are errors.
func (d *decoder) pairs(n *yaml.Node, path string) []pair {
	if !d.spend(n, path) {
		return nil
	}
	if d.merging[n] {
		d.errAt(n, path, "merge key << refers to a mapping that contains it")
		return nil
	}
	d.merging[n] = true
	defer delete(d.merging, n)
	var own []pair
	seen := map[string]*yaml.Node{}
	var merged [][]pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if rk := resolve(k); rk != nil {
			k = rk
		}
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergeSources(val, path)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errAt(k, path, "want a field name, got %s", describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errAt(k, keyPath(path, k.Value), "duplicate key %q (first at line %d)", k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		own = append(own, pair{key: k, val: val, name: k.Value})
	}
	for _, src := range merged {
		for _, p := range src {
			if _, ok := seen[p.name]; !ok {
				seen[p.name] = p.key
				own = append(own, p)
			}
		}
	}
	return own
}

func (d *decoder) mergeSources(val *yaml.Node, path string) [][]pair {
	v := resolve(val)
	switch {
	case v == nil:
	case v.Kind == yaml.MappingNode:
		return [][]pair{d.pairs(v, path)}
	case v.Kind == yaml.SequenceNode:
		var out [][]pair
		for _, item := range v.Content {
			m := resolve(item)
			if m == nil || m.Kind != yaml.MappingNode {
				d.errAt(item, path, "merge key << wants a mapping or a list of mappings, got %s", describe(item))
				continue
			}
			out = append(out, d.pairs(m, path))
		}
		return out
	}
	d.errAt(val, path, "merge key << wants a mapping or a list of mappings, got %s", describe(val))
	return nil
}

// fieldSet maps the yaml names of a struct's fields to their indexes.
type fieldSet struct {
	index map[string]int
	names []string // sorted
}

var fieldCache sync.Map // reflect.Type -> *fieldSet

func structFields(t reflect.Type) *fieldSet {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.(*fieldSet)
	}
	fs := &fieldSet{index: map[string]int{}}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" || name == "" {
			continue
		}
		fs.index[name] = i
		fs.names = append(fs.names, name)
	}
	sort.Strings(fs.names)
	fieldCache.Store(t, fs)
	return fs
}

// hint suggests the closest known field, or lists them all.
func (fs *fieldSet) hint(name string) string {
	best, bestDist := "", 3
	for _, f := range fs.names {
		if dist := editDistance(strings.ToLower(name), f); dist < bestDist {
			best, bestDist = f, dist
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return " (known fields: " + strings.Join(fs.names, ", ") + ")"
}

// editDistance is the Levenshtein distance, capped for long inputs.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
