package main

import (
	"flag"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"

	"github.com/plexus-cni/plexus/tools/ociimage/image"
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, " ") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

func runBuild(args []string, stderr io.Writer) error {
	fset := flag.NewFlagSet("ociimage build", flag.ContinueOnError)
	fset.SetOutput(stderr)
	var (
		out, tag                     string
		files, entrypoint, cmd, envs stringList
	)
	fset.StringVar(&out, "out", "", "docker-archive tarball to write")
	fset.StringVar(&tag, "tag", "", "image name in the tarball, registry/repository:tag")
	fset.Var(&files, "file", "/DEST=SRC[:MODE]: copy SRC to /DEST in the image, with octal MODE (default 0755 if SRC is executable, else 0644); repeatable")
	fset.Var(&entrypoint, "entrypoint", "entrypoint element; repeatable")
	fset.Var(&cmd, "cmd", "command (entrypoint arguments) element; repeatable")
	fset.Var(&envs, "env", "KEY=VALUE environment entry; repeatable")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if fset.NArg() > 0 {
		return usageError(fset, "unexpected argument %q", fset.Arg(0))
	}
	if out == "" || tag == "" || len(files) == 0 {
		return usageError(fset, "--out, --tag and at least one --file are required")
	}
	ref, err := image.ParseTag(tag)
	if err != nil {
		return err
	}
	spec := image.Spec{Entrypoint: entrypoint, Cmd: cmd, Env: envs}
	for _, f := range files {
		file, err := parseFileFlag(f)
		if err != nil {
			return err
		}
		spec.Files = append(spec.Files, file)
	}
	img, err := image.Build(spec)
	if err != nil {
		return fmt.Errorf("build %s: %w", tag, err)
	}
	return image.WriteTarball(out, ref, img)
}

func usageError(fset *flag.FlagSet, format string, args ...any) error {
	fmt.Fprintf(fset.Output(), format+"\n", args...)
	fset.Usage()
	return flag.ErrHelp
}

// parseFileFlag parses /DEST=SRC[:MODE]. A trailing ":" and three or four
// octal digits is a mode; any other colon belongs to SRC.
func parseFileFlag(v string) (image.File, error) {
	dest, src, ok := strings.Cut(v, "=")
	if !ok || dest == "" || src == "" {
		return image.File{}, fmt.Errorf("--file %q: want /DEST=SRC[:MODE]", v)
	}
	f := image.File{Path: dest, Source: src}
	if i := strings.LastIndexByte(src, ':'); i >= 0 && isOctalMode(src[i+1:]) {
		mode, err := strconv.ParseUint(src[i+1:], 8, 32)
		if err != nil {
			return image.File{}, fmt.Errorf("--file %q: mode: %w", v, err)
		}
		if mode&^uint64(fs.ModePerm) != 0 || mode == 0 {
			return image.File{}, fmt.Errorf("--file %q: mode %s: want permission bits, e.g. 0755", v, src[i+1:])
		}
		f.Source, f.Mode = src[:i], fs.FileMode(mode)
	}
	if f.Source == "" {
		return image.File{}, fmt.Errorf("--file %q: want /DEST=SRC[:MODE]", v)
	}
	return f, nil
}

func isOctalMode(s string) bool {
	if len(s) != 3 && len(s) != 4 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '7' {
			return false
		}
	}
	return true
}
