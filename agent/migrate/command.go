package migrate

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// Command is `plexus-agent migrate --from-multus FILE`: the agent.yaml on
// stdout, a line per key not carried as is on stderr. It fails only when
// FILE cannot be read.
func Command(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from-multus", "", "a Multus daemon-config.json or 00-multus.conf(list)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *from == "" || fs.NArg() > 0 {
		return errors.New("usage: plexus-agent migrate --from-multus FILE")
	}
	data, err := os.ReadFile(*from)
	if err != nil {
		return fmt.Errorf("read multus config: %w", err)
	}
	res, err := FromMultus(data, *from)
	if err != nil {
		return err
	}
	for _, n := range res.Notes {
		if _, err := fmt.Fprintln(stderr, n); err != nil {
			return err
		}
	}
	_, err = stdout.Write(res.YAML)
	return err
}
