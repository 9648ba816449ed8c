package configs_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/configs/internal/gen"
)

// TestGeneratedFilesAreCurrent: default.yaml (the embedded default, and the file the Docker
// image bakes) and docs/configuration.md are what the keys' table generates, so that a key's
// default, documentation and constraints cannot drift apart.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	keys := configs.Keys()
	for _, f := range []struct {
		path string
		want []byte
	}{
		{gen.YAMLPath, gen.YAML(keys)},
		{gen.MarkdownPath, gen.Markdown(keys)},
	} {
		got, err := os.ReadFile(filepath.Join("..", f.path))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, f.want) {
			t.Errorf("%s is stale: run go generate ./configs (first difference at line %d)", f.path, firstDiffLine(got, f.want))
		}
	}
	if want := gen.YAML(keys); !bytes.Equal(configs.DefaultYAML, want) {
		t.Errorf("the embedded default is stale: run go generate ./configs (first difference at line %d)", firstDiffLine(configs.DefaultYAML, want))
	}
}

func firstDiffLine(a, b []byte) int {
	al, bl := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := range min(len(al), len(bl)) {
		if !bytes.Equal(al[i], bl[i]) {
			return i + 1
		}
	}
	return min(len(al), len(bl)) + 1
}
