package config

import (
	"errors"
	"sort"
	"strconv"
	"strings"
)

// Error is one problem found in a config, tied to the place it was found.
//
// It prints as "FILE:LINE:COL: PATH: MSG". Parts that are unknown are left
// out: without a position it is "FILE: PATH: MSG", without a file (a
// container validated at run time) "PATH: MSG".
type Error struct {
	// File is the config file's name as it was given; may be empty.
	File string
	// Line and Col are 1-based; zero when the position is unknown.
	Line, Col int
	// Path names the field, e.g. "networks[1].subnet" or
	// "containers[0].ip.web"; empty for problems of the whole file (YAML
	// syntax).
	Path string
	// Msg says what is wrong, lower-case, quoting the bad value.
	Msg string

	err error // the underlying error, if any (e.g. reading the file)
}

// Error formats the error as "FILE:LINE:COL: PATH: MSG".
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line) + ":" + strconv.Itoa(max(e.Col, 1)))
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying error, such as the fs error of a file that
// could not be read.
func (e *Error) Unwrap() error { return e.err }

// ErrConflict is wrapped by the errors of things already taken by another
// container or by the agent: a name, a netns, a static address, a host
// port. errors.Is(err, ErrConflict) tells them (HTTP 409) from plain bad
// input (400).
var ErrConflict = errors.New("already taken")

// ErrorList is every problem found in one or more configs. It is returned
// as an error only when non-empty (see Err).
type ErrorList []*Error

// Error writes one error per line, in the list's order.
func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap gives errors.Is and errors.As access to every error in the list.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// Err returns the list as an error, or nil when it is empty (avoiding a
// non-nil error interface holding an empty list).
func (l ErrorList) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// Sort orders the list by line and column within each file; files keep
// the order in which they first appear, and errors without a position keep
// their relative order.
func (l ErrorList) Sort() {
	rank := map[string]int{}
	for _, e := range l {
		if _, ok := rank[e.File]; !ok {
			rank[e.File] = len(rank)
		}
	}
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i], l[j]
		if a.File != b.File {
			return rank[a.File] < rank[b.File]
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

// AsErrorList returns err as an ErrorList: itself if it is one (or wraps
// one), else a list of one Error holding err's message.
func AsErrorList(err error) ErrorList {
	if err == nil {
		return nil
	}
	var l ErrorList
	if errors.As(err, &l) {
		return l
	}
	var e *Error
	if errors.As(err, &e) {
		return ErrorList{e}
	}
	return ErrorList{{Msg: err.Error(), err: err}}
}
