package configs

import (
	"fmt"
	"strconv"
	"strings"
)

// maxProblems bounds the problems one Error keeps; the rest are only counted.
const maxProblems = 50

// Problem is one reason a config was refused.
type Problem struct {
	// Line is the line of the config file the value came from (1-based), 0 if none.
	Line int
	// Env is the environment variable the value came from, "" if none.
	Env string
	// Key is the dotted YAML path of the value ("nats.inbound.backoff[2]"), "" when the problem
	// is not about one known key (a syntax error, an unknown key: Reason names it then).
	Key string
	// Reason says what is wrong. It never holds a secret.
	Reason string
}

// String formats the problem as "[line N: |env NAME: ][key: ]reason".
func (p Problem) String() string {
	var b strings.Builder
	switch {
	case p.Env != "":
		b.WriteString("env " + p.Env + ": ")
	case p.Line > 0:
		b.WriteString("line " + strconv.Itoa(p.Line) + ": ")
	}
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Reason)
	return b.String()
}

// Error is a refused config: every problem found, in the order found.
type Error struct {
	// File is the config file's path as given to Load; "" for the embedded default or Parse.
	File     string
	Problems []Problem
	// More counts the problems left out of Problems (beyond the first 50).
	More int
}

// Error formats the problems: one on a single line, "config[ FILE]: line 12: unknown key ..."; more
// than one as a count followed by one indented problem per line.
func (e *Error) Error() string {
	head := "config"
	if e.File != "" {
		head += " " + e.File
	}
	if len(e.Problems) == 1 && e.More == 0 {
		return head + ": " + e.Problems[0].String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d problems:", head, len(e.Problems)+e.More)
	for _, p := range e.Problems {
		b.WriteString("\n  " + p.String())
	}
	if e.More > 0 {
		fmt.Fprintf(&b, "\n  (%d more not shown)", e.More)
	}
	return b.String()
}

// problemList collects problems up to maxProblems.
type problemList struct {
	problems []Problem
	more     int
}

func (l *problemList) add(p Problem) {
	if len(l.problems) >= maxProblems {
		l.more++
		return
	}
	l.problems = append(l.problems, p)
}
