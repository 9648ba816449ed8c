// Command genconfig writes configs/default.yaml and docs/configuration.md from the config keys'
// table (configs/keys.go). `go generate ./configs` runs it from the configs directory.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/configs/internal/gen"
)

func main() {
	// go generate runs in the directory of the file that asks for it: configs.
	root := ".."
	keys := configs.Keys()
	for path, data := range map[string][]byte{gen.YAMLPath: gen.YAML(keys), gen.MarkdownPath: gen.Markdown(keys)} {
		if err := os.WriteFile(filepath.Join(root, path), data, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "genconfig:", err)
			os.Exit(1)
		}
	}
}
