package config

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// Error is a problem with the configuration file, at a line of it when one is to blame.
// Its text is "FILE:LINE: REASON", the form compilers use, so that an editor jumps there.
type Error struct {
	Path   string
	Line   int // 0: the file as a whole
	Reason string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Reason)
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Reason)
}

// Entry is one key of the file with its values: one for a scalar, any number for a list.
type Entry struct {
	Key    string
	Values []string
	List   bool
	Line   int
}

// File is a parsed configuration file.
type File struct {
	Path    string
	Entries []Entry
}

// Load reads and parses the file at path.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Path: path, Reason: fmt.Sprintf("cannot read the configuration file: %v", err)}
	}
	return Parse(path, data)
}

// yamlLine finds the line yaml.v3 puts in its messages ("yaml: line 3: ...").
var yamlLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?`)

// Parse parses data, the content of the file at path: a mapping of flag names to a
// scalar or a list of scalars. An empty file (or only comments) sets nothing.
func Parse(path string, data []byte) (*File, error) {
	f := &File{Path: path}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		e := &Error{Path: path, Reason: err.Error()}
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			if m := yamlLine.FindStringSubmatch(e.Reason); m != nil {
				fmt.Sscan(m[1], &e.Line)
				e.Reason = "invalid YAML: " + e.Reason[len(m[0]):]
			}
		}
		return nil, e
	}
	if len(doc.Content) == 0 {
		return f, nil // empty
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return f, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, &Error{Path: path, Line: root.Line, Reason: "the configuration must be a mapping of flag names to values, e.g. \"max-size-mb: 100\""}
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, &Error{Path: path, Line: k.Line, Reason: "a key must be a flag name"}
		}
		key := strings.TrimPrefix(k.Value, "--")
		if first, ok := seen[key]; ok {
			return nil, &Error{Path: path, Line: k.Line, Reason: fmt.Sprintf("key %q given twice (first on line %d)", key, first)}
		}
		seen[key] = k.Line
		e := Entry{Key: key, Line: k.Line}
		switch {
		case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
			continue // "key:" with nothing: as if absent
		case v.Kind == yaml.ScalarNode:
			e.Values = []string{v.Value}
		case v.Kind == yaml.SequenceNode:
			e.List = true
			for _, item := range v.Content {
				if item.Kind != yaml.ScalarNode {
					return nil, &Error{Path: path, Line: item.Line, Reason: fmt.Sprintf("wrong type for %q: a list item must be a plain value", key)}
				}
				e.Values = append(e.Values, item.Value)
			}
		default:
			return nil, &Error{Path: path, Line: v.Line, Reason: fmt.Sprintf("wrong type for %q: want a value or a list of values, not a mapping", key)}
		}
		f.Entries = append(f.Entries, e)
	}
	return f, nil
}

// notInFile are flags that make no sense in the file.
var notInFile = map[string]bool{"config": true, "help": true, "version": true}

// IsList reports whether a flag is repeatable, so that a list may set it.
func IsList(f *pflag.Flag) bool {
	switch f.Value.Type() {
	case "strings", "stringSlice", "stringArray":
		return true
	}
	return false
}

// Apply sets the flags of fs named by the file's keys, but not those for which skip
// (nil: none) returns true: the command line and the environment win over the file. An
// unknown key, a value of the wrong type or one the flag rejects is an *Error naming the
// line.
func (f *File) Apply(fs *pflag.FlagSet, skip func(name string) bool) error {
	for _, e := range f.Entries {
		fl := fs.Lookup(e.Key)
		switch {
		case fl == nil || notInFile[e.Key]:
			return &Error{Path: f.Path, Line: e.Line, Reason: fmt.Sprintf("unknown key %q (keys are the flags' names, see kubelogd --help)", e.Key)}
		case e.List && !IsList(fl):
			return &Error{Path: f.Path, Line: e.Line, Reason: fmt.Sprintf("wrong type for %q: a list, but it takes one %s", e.Key, fl.Value.Type())}
		}
		if skip != nil && skip(e.Key) {
			continue
		}
		for _, v := range e.Values {
			if err := fl.Value.Set(v); err != nil {
				return &Error{Path: f.Path, Line: e.Line, Reason: fmt.Sprintf("invalid value %q for %q: %v", v, e.Key, err)}
			}
		}
		fl.Changed = true
	}
	return nil
}

// flagName finds "--name" in an error message.
var flagName = regexp.MustCompile(`--([a-z0-9][a-z0-9-]*)`)

// Locate returns err as an *Error at the line of the first key of the file that its
// message names as a flag ("--selector"), when the file sets that key and err is not
// already an *Error; else err unchanged. A value the flag accepted but validation
// rejects (a bad selector, --renew-deadline above --lease-duration) is then reported
// where it is written.
func (f *File) Locate(err error) error {
	var ce *Error
	if err == nil || errors.As(err, &ce) {
		return err
	}
	for _, m := range flagName.FindAllStringSubmatch(err.Error(), -1) {
		for _, e := range f.Entries {
			if e.Key == m[1] {
				return &Error{Path: f.Path, Line: e.Line, Reason: err.Error()}
			}
		}
	}
	return err
}

// Entry returns the entry of key, if the file sets it.
func (f *File) Entry(key string) (Entry, bool) {
	for _, e := range f.Entries {
		if e.Key == key {
			return e, true
		}
	}
	return Entry{}, false
}
