// Package logvocab checks the log vocabulary: it finds every key that the module's code logs
// under, and the keys that docs/logging.md lists, so that a test can require every key logged to
// be documented and every key documented to be logged.
//
// It type-checks the module's non-test files (go/types; the imports come from the export data
// that `go list -export` leaves in the build cache, so it needs the go command and nothing else)
// and reads keys from:
//   - the key-value arguments of every function or method whose last parameters are
//     (msg string, args ...any): slog.Logger's Debug, Info, Warn, Error and Log, their Context
//     forms, the log/slog functions of those names, and any wrapper of the same shape;
//   - the arguments of log/slog's With (function and method), Group and Record.Add;
//   - the key of every attribute made with a log/slog constructor (String, Int, Duration, Any,
//     Group, ...) or an slog.Attr literal, wherever it is made (a LogValue method, a handler).
//
// A key must be a constant string. A key that is computed is a problem unless a directive
// comment on its line or the line above says what it is:
//
//	//logvocab:keys token pin  (the computed key is one of these; each is checked like a constant)
//	//logvocab:any REASON      (the keys are not this vocabulary's: say whose they are)
package logvocab

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/constant"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Use is one key at one place in the source.
type Use struct {
	Key string
	Pos token.Position
}

// Problem is a place whose key cannot be read.
type Problem struct {
	Pos token.Position
	Why string
}

func (p Problem) String() string { return fmt.Sprintf("%s: %s", p.Pos, p.Why) }

// listed is what `go list -json` says of a package, as far as the scan needs.
type listed struct {
	ImportPath string
	Dir        string
	Export     string
	GoFiles    []string
	CgoFiles   []string
	Standard   bool
	Module     *struct{ Main bool }
	Error      *struct{ Err string }
}

// Scan type-checks every package of the module at root (the go command's ./...) and returns the
// keys logged, sorted by key then place, and the places whose keys it could not read.
func Scan(root string) ([]Use, []Problem, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, nil, err
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(gobin, "list", "-export", "-deps", "-json=ImportPath,Dir,Export,GoFiles,CgoFiles,Standard,Module,Error", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, nil, fmt.Errorf("go list: %w: %s", err, stderr.String())
	}
	exports := map[string]string{}
	var mine []listed
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, nil, fmt.Errorf("go list output: %w", err)
		}
		if p.Error != nil {
			return nil, nil, fmt.Errorf("go list: %s: %s", p.ImportPath, p.Error.Err)
		}
		exports[p.ImportPath] = p.Export
		if !p.Standard && p.Module != nil && p.Module.Main {
			mine = append(mine, p)
		}
	}
	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		f, ok := exports[path]
		if !ok || f == "" {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(f)
	})
	s := &scanner{fset: fset, root: root}
	for _, p := range mine {
		var files []*ast.File
		for _, name := range append(p.GoFiles, p.CgoFiles...) {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.ParseComments|parser.SkipObjectResolution)
			if err != nil {
				return nil, nil, err
			}
			files = append(files, f)
		}
		if err := s.check(p.ImportPath, files, imp); err != nil {
			return nil, nil, err
		}
	}
	sort.SliceStable(s.uses, func(i, j int) bool { return s.uses[i].Key < s.uses[j].Key })
	return s.uses, s.problems, nil
}

// ScanSource scans one file of package main that imports nothing but the standard library (read
// from its export data, which the go command makes), for tests of the matching itself.
func ScanSource(name, src string) ([]Use, []Problem, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, src, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		return nil, nil, err
	}
	s := &scanner{fset: fset}
	if err := s.check("main", []*ast.File{f}, importer.ForCompiler(fset, "gc", nil)); err != nil {
		return nil, nil, err
	}
	return s.uses, s.problems, nil
}

type scanner struct {
	fset     *token.FileSet
	root     string
	uses     []Use
	problems []Problem
}

func (s *scanner) check(path string, files []*ast.File, imp types.Importer) error {
	info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}, Uses: map[*ast.Ident]types.Object{}}
	conf := types.Config{Importer: imp, FakeImportC: true}
	if _, err := conf.Check(path, s.fset, files, info); err != nil {
		return fmt.Errorf("type-check %s: %w", path, err)
	}
	for _, f := range files {
		d := directives(s.fset, f)
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				if isAttr(info.Types[n].Type) {
					for _, e := range n.Elts {
						if kv, ok := e.(*ast.KeyValueExpr); ok {
							if id, ok := kv.Key.(*ast.Ident); ok && id.Name == "Key" {
								s.key(info, d, kv.Value)
							}
						}
					}
				}
				if isAnySlice(info.Types[n].Type) {
					s.pairs(info, d, n.Elts, false)
				}
			case *ast.CallExpr:
				s.call(info, d, n)
			}
			return true
		})
	}
	return nil
}

// call reads the keys of n if it is a log call or makes an attribute.
func (s *scanner) call(info *types.Info, d map[int]string, n *ast.CallExpr) {
	var id *ast.Ident
	switch fun := ast.Unparen(n.Fun).(type) {
	case *ast.Ident:
		id = fun
	case *ast.SelectorExpr:
		id = fun.Sel
	default:
		return
	}
	if b, ok := info.Uses[id].(*types.Builtin); ok {
		if b.Name() == "append" && len(n.Args) > 0 && isAnySlice(info.Types[n].Type) {
			s.pairs(info, d, n.Args[1:], n.Ellipsis.IsValid())
		}
		return
	}
	fn, ok := info.Uses[id].(*types.Func)
	if !ok {
		return
	}
	sig := fn.Type().(*types.Signature)
	params := sig.Params()
	inSlog := fn.Pkg() != nil && fn.Pkg().Path() == "log/slog"
	switch {
	case inSlog && sig.Results().Len() == 1 && isAttr(sig.Results().At(0).Type()) &&
		params.Len() > 0 && params.At(0).Name() == "key":
		// An attribute constructor: String, Int, ..., Any, Group.
		if len(n.Args) > 0 {
			s.key(info, d, n.Args[0])
		}
		if fn.Name() == "Group" {
			s.pairs(info, d, n.Args[1:], n.Ellipsis.IsValid())
		}
	case !sig.Variadic():
	case isAnySlice(params.At(params.Len()-1).Type()) && params.Len() >= 2 &&
		params.At(params.Len()-2).Name() == "msg" && isString(params.At(params.Len()-2).Type()):
		// (msg string, args ...any): a log call.
		s.pairs(info, d, n.Args[min(params.Len()-1, len(n.Args)):], n.Ellipsis.IsValid())
	case inSlog && (fn.Name() == "With" || fn.Name() == "Add") && params.Len() == 1 && isAnySlice(params.At(0).Type()):
		s.pairs(info, d, n.Args, n.Ellipsis.IsValid())
	}
}

// pairs reads key-value arguments: a string is a key followed by its value, an slog.Attr stands
// alone (its key is read where it is made), a last argument passed on with ... (spread) has its
// keys read where its elements are put in.
func (s *scanner) pairs(info *types.Info, d map[int]string, args []ast.Expr, spread bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		t := info.Types[a].Type
		switch {
		case spread && i == len(args)-1:
			// args... passed on: their keys are read where they are made.
		case isString(t):
			s.key(info, d, a)
			i++ // its value
		case isAttr(t):
		default:
			if s.directive(d, a, fmt.Sprintf("a %s where a log key goes (slog would log it under !BADKEY)", t)) {
				return // the directive speaks for the rest of the list
			}
		}
	}
}

// key records the key e, a constant string, or a computed key that a directive explains.
func (s *scanner) key(info *types.Info, d map[int]string, e ast.Expr) {
	if v := info.Types[e].Value; v != nil && v.Kind() == constant.String {
		s.uses = append(s.uses, Use{Key: constant.StringVal(v), Pos: s.pos(e)})
		return
	}
	s.directive(d, e, "a computed log key")
}

// directive applies the //logvocab: directive on e's line or the line above to e, whose key
// cannot be read (what says why): keys records the keys it names, any excuses e. Without a
// directive, or with a malformed one, e is a problem. It reports whether a directive applied.
func (s *scanner) directive(d map[int]string, e ast.Expr, what string) bool {
	p := s.pos(e)
	dir, ok := d[p.Line]
	if !ok {
		dir, ok = d[p.Line-1]
	}
	verb, rest, _ := strings.Cut(dir, " ")
	rest = strings.TrimSpace(rest)
	switch {
	case !ok:
		s.problems = append(s.problems, Problem{Pos: p,
			Why: what + ": write the key as a constant, or say what it is with //logvocab:keys or //logvocab:any"})
	case verb == "keys" && rest != "":
		for _, k := range strings.Fields(rest) {
			s.uses = append(s.uses, Use{Key: k, Pos: p})
		}
		return true
	case verb == "any" && rest != "":
		return true
	default:
		s.problems = append(s.problems, Problem{Pos: p, Why: fmt.Sprintf("a logvocab directive %q: want keys K... or any REASON", dir)})
	}
	return false
}

func (s *scanner) pos(n ast.Node) token.Position {
	p := s.fset.Position(n.Pos())
	if s.root != "" {
		if rel, err := filepath.Rel(s.root, p.Filename); err == nil {
			p.Filename = filepath.ToSlash(rel)
		}
	}
	return p
}

// directives maps the lines of f's //logvocab: comments to their text after the prefix.
func directives(fset *token.FileSet, f *ast.File) map[int]string {
	d := map[int]string{}
	for _, g := range f.Comments {
		for _, c := range g.List {
			if rest, ok := strings.CutPrefix(c.Text, "//logvocab:"); ok {
				d[fset.Position(c.Slash).Line] = strings.TrimSpace(rest)
			}
		}
	}
	return d
}

func isString(t types.Type) bool {
	b, ok := t.(*types.Basic)
	return ok && b.Info()&types.IsString != 0
}

func isAttr(t types.Type) bool {
	n, ok := t.(*types.Named)
	return ok && n.Obj().Pkg() != nil && n.Obj().Pkg().Path() == "log/slog" && n.Obj().Name() == "Attr"
}

func isAnySlice(t types.Type) bool {
	s, ok := t.(*types.Slice)
	if !ok {
		return false
	}
	i, ok := s.Elem().Underlying().(*types.Interface)
	return ok && i.Empty()
}

// tableRow is a row of a markdown table whose first cell is one or more backquoted keys.
var tableRow = regexp.MustCompile("^\\|\\s*(`[^`]+`(?:\\s*,\\s*`[^`]+`)*)\\s*\\|")

// Vocabulary reads the keys of the markdown file at path: the rows, in the sections whose heading
// starts with heading (down to the next heading of the same or a higher level), whose first cell
// holds one or more backquoted keys ("`a`" or "`a`, `b`"). It returns each key with its line.
func Vocabulary(path, heading string) (map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	keys := map[string]int{}
	level := 0 // of the heading whose section is being read; 0: none
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		t := sc.Text()
		if strings.HasPrefix(t, "#") {
			l := len(t) - len(strings.TrimLeft(t, "#"))
			switch {
			case level != 0 && l > level:
				// a subsection of the section being read
			case strings.HasPrefix(strings.TrimSpace(t[l:]), heading):
				level = l
			default:
				level = 0
			}
			continue
		}
		if level == 0 {
			continue
		}
		m := tableRow.FindStringSubmatch(t)
		if m == nil {
			continue
		}
		for _, k := range strings.Split(m[1], ",") {
			k = strings.Trim(strings.TrimSpace(k), "`")
			if prev, dup := keys[k]; dup {
				return nil, fmt.Errorf("%s:%d: key %q listed twice (first on line %d)", path, line, k, prev)
			}
			keys[k] = line
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no key table under a heading %q", path, heading)
	}
	return keys, nil
}
