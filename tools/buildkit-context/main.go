// buildkit-context prints the build context BuildKit's client sends of a directory: its
// .dockerignore read by moby/patternmatcher's ignorefile, the tree walked by tonistiigi/fsutil
// with those exclude patterns, as buildx does. One line per entry: `dir/`, `file`,
// `link -> target`. tests/unit/plan/test_context_buildkit.py compares workhub's context with it.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/moby/patternmatcher/ignorefile"
	"github.com/tonistiigi/fsutil"
	"github.com/tonistiigi/fsutil/types"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: buildkit-context <dir>")
		os.Exit(2)
	}
	root := os.Args[1]
	var excludes []string
	if f, err := os.Open(filepath.Join(root, ".dockerignore")); err == nil {
		excludes, err = ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	opt := &fsutil.FilterOpt{ExcludePatterns: excludes}
	err := fsutil.Walk(context.Background(), root, opt, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			fmt.Printf("%s -> %s\n", path, info.Sys().(*types.Stat).Linkname)
		case info.IsDir():
			fmt.Printf("%s/\n", path)
		default:
			fmt.Println(path)
		}
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
