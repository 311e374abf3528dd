package cni_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/plexus-cni/plexus/internal/shimbin"
)

const defaultSocket = "/run/plexus/agent.sock"

// scanReference is what the shim's tolerant scan must find in a valid JSON
// document, by encoding/json: the last string value of the top-level key
// written exactly "socketPath" (an escaped key is another key to the scan)
// and the last number value of "connectTimeoutSeconds", 3 when there is
// none or it is not in (0, 1e9). Values of other types leave a field as it
// was; a document that is not an object has none. It says nothing of
// invalid JSON, which the scan need not make sense of.
func scanReference(doc []byte) (path string, connect float64) {
	path, connect = defaultSocket, 0
	dec := json.NewDecoder(bytes.NewReader(doc))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return path, 3
	}
	for dec.More() {
		start := dec.InputOffset()
		if _, err := dec.Token(); err != nil {
			panic(err) // valid JSON
		}
		key := strings.Trim(string(doc[start:dec.InputOffset()]), " \t\r\n,")
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			panic(err)
		}
		switch {
		case key == `"socketPath"` && raw[0] == '"':
			var s string
			json.Unmarshal(raw, &s)
			if s != "" {
				path = s
			} else {
				path = defaultSocket
			}
		case key == `"connectTimeoutSeconds"` && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9'):
			connect, _ = strconv.ParseFloat(string(raw), 64)
		}
	}
	if !(connect > 0 && connect < 1e9) {
		connect = 3
	}
	return path, connect
}

// escapeBytes is the shim's escaping of a socket path: printable ASCII but
// " and \ as they are, every other byte as \u00XX.
func escapeBytes(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			fmt.Fprintf(&b, `\u%04x`, c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// checkScan runs the shim on doc with a command no agent serves (so that
// reaching a real agent at the default socket does no harm) and checks the
// CNI error it prints: always code 11 and a JSON object; for a valid JSON
// document whose socket does not exist, the very path and connect timeout
// the reference finds.
func checkScan(t *testing.T, doc []byte) {
	t.Helper()
	r := shim(t, map[string]string{"CNI_COMMAND": "SCAN"}, doc)
	var got cniError
	if err := json.Unmarshal(r.stdout, &got); err != nil || r.exit != 1 {
		t.Errorf("config %q: exit %d, stdout %q is not a CNI error", doc, r.exit, r.stdout)
		return
	}
	if !json.Valid(doc) || !utf8.Valid(doc) {
		return // raw invalid UTF-8 stays as it is in the shim, encoding/json makes it U+FFFD
	}
	path, connect := scanReference(doc)
	if _, err := os.Stat(path); path == defaultSocket && err == nil {
		return // an agent may be listening there
	}
	if path != defaultSocket && !strings.HasPrefix(path, notDir()+"/") && !strings.Contains(path, "\x00") && len(path) < 108 {
		return // a path the fuzzer made up: what connect says is the file system's
	}
	want := "agent socket " + escapeBytes(path) + ": "
	switch {
	case strings.Contains(path, "\x00"):
		want += "contains a NUL byte"
	case len(path) >= 108:
		want += "too long"
	case path == defaultSocket:
		want += fmt.Sprintf("connect (waited %ss): No such file or directory", strconv.FormatFloat(connect, 'g', 6, 64))
	default:
		want += fmt.Sprintf("connect (waited %ss): Not a directory", strconv.FormatFloat(connect, 'g', 6, 64))
	}
	if want := `{"code":11,"msg":"plexus agent not available","details":"` + want + `"}`; string(r.stdout) != want {
		t.Errorf("config %q:\nshim  %s\nwant  %s", doc, r.stdout, want)
	}
}

// notDir is a regular file: sockets below it fail to connect at once
// (ENOTDIR), so checks do not wait for a connect timeout.
var notDir = sync.OnceValue(func() string {
	d, err := os.MkdirTemp("", "plexus-scan")
	if err != nil {
		panic(err)
	}
	f := filepath.Join(d, "f")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		panic(err)
	}
	return f
})

func scanSeeds() []string {
	p := notDir()
	q := strings.ReplaceAll(p, "/", `\/`)
	return []string{
		`{"connectTimeoutSeconds":0.01}`, ` {"connectTimeoutSeconds":0.01,"socketPath":"` + p + `/s"} `,
		`{"socketPath":"` + q + `\/esc\u00e9\ud83d\ude00\ud800x\"\\\t","connectTimeoutSeconds":0.02}`,
		`{"socketPath":"` + p + `/a","socketPath":"` + p + `/b","connectTimeoutSeconds":1e-2}`,
		`{"socketPath":"` + p + `/a","socketPath":null,"socketPath":5,"connectTimeoutSeconds":0.01}`,
		`{"socket\u0050ath":"` + p + `/escaped-key","connectTimeoutSeconds":0.01}`,
		`{"SocketPath":"` + p + `/case","connectTimeoutSeconds":0.01}`,
		`{"x":{"socketPath":"` + p + `/nested"},"y":["socketPath",":","` + p + `/arr"],"connectTimeoutSeconds":0.01}`,
		`{"a":"}{,\"socketPath\":","socketPath":"` + p + `/tricky","connectTimeoutSeconds":0.01}`,
		`{"socketPath":"","connectTimeoutSeconds":0.01}`, `{"socketPath":"/run/a\u0000b"}`,
		`{"socketPath":"/` + strings.Repeat("d", 120) + `"}`,
		`{"connectTimeoutSeconds":0.01,"connectTimeoutSeconds":"9"}`, `{"connectTimeoutSeconds":-1,"socketPath":"` + p + `/neg"}`,
		`{"connectTimeoutSeconds":0.01,"socketPath":"` + p + `/big","connectTimeoutSeconds":1e400}`,
		`{"connectTimeoutSeconds":1.5e-2,"socketPath":"` + p + `/exp"}`,
		`[]`, `"socketPath"`, ``, `{`, `{"socketPath":`, `{"socketPath":"unterminated`, `{"socketPath":"\u12`,
		"{\"socketPath\":\"" + p + "/raw\xff\",\"connectTimeoutSeconds\":0.01}", `{"connectTimeoutSeconds":0.01,"socketPath":"` + p + `/x"}}}]]`,
		`{"connectTimeoutSeconds":0.01,` + strings.Repeat("[", 100000), `{"connectTimeoutSeconds":0.01,"a":` + strings.Repeat(`"\`, 1000),
	}
}

func TestScanMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	shimbin.Path(t)
	for i, c := range scanSeeds() {
		// In parallel: the seeds without a connect timeout wait 3 s.
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			checkScan(t, []byte(c))
		})
	}
}

// Generated documents, valid and then mutated after their first member
// (which keeps the connect timeout small), from a fixed seed.
func TestScanGenerated(t *testing.T) {
	t.Parallel()
	shimbin.Path(t) // here, not in the workers: it may Fatalf
	rng := rand.New(rand.NewPCG(1, 2))
	var docs [][]byte
	for range 300 {
		d := genDoc(rng)
		docs = append(docs, d, mutate(rng, d))
	}
	work := make(chan []byte)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range work {
				checkScan(t, d)
			}
		}()
	}
	for _, d := range docs {
		work <- d
	}
	close(work)
	wg.Wait()
}

// FuzzScan fuzzes what follows a first member that keeps the connect
// timeout small: go test ./cni -run XXX -fuzz FuzzScan (with
// PLEXUS_SHIM_BINARY set to the sanitizer build for memory errors).
func FuzzScan(f *testing.F) {
	const head = `{"connectTimeoutSeconds":0.01,`
	for _, c := range scanSeeds() {
		f.Add([]byte(strings.TrimPrefix(strings.ReplaceAll(c, `"connectTimeoutSeconds":`, `"x":`), "{")))
	}
	f.Fuzz(func(t *testing.T, tail []byte) {
		if len(tail) > 1<<20 || bytes.Contains(tail, []byte("connectTimeoutSeconds")) {
			t.Skip("a long connect timeout would only make the fuzzer wait")
		}
		checkScan(t, append([]byte(head), tail...))
	})
}

var (
	keys = []string{"socketPath", "connectTimeoutSeconds", "timeoutSeconds", "name", "type", "socketpath", `socket\u0050ath`, "", "ñ"}
	strs = []string{`""`, `"a\"b"`, `"\u00e9\ud83d\ude00"`, `"\ud800"`, `"<&>"`, `"\\\/\b\f\n\r\t"`, `"}{]["`, `":,"`}
	nums = []string{"0.01", "0.02", "1e-2", "2.5E-2", "0.010"}
	// others holds no negative or zero numbers: as connect timeouts they
	// would mean the 3 s default.
	others = []string{"null", "true", "false", "[]", "{}", `[1,"x",{"a":null}]`, `{"socketPath":{"k":[true]}}`}
)

func genValue(rng *rand.Rand, key string, depth int) string {
	switch rng.IntN(4) {
	case 0:
		if key == "socketPath" {
			return fmt.Sprintf(`"%s/%d%s"`, strings.ReplaceAll(notDir(), "/", []string{"/", `\/`, `\u002f`}[rng.IntN(3)]), rng.IntN(100), strs[rng.IntN(len(strs))][1:])
		}
		return strs[rng.IntN(len(strs))]
	case 1:
		return nums[rng.IntN(len(nums))]
	case 2:
		if depth < 3 {
			parts := make([]string, rng.IntN(3))
			for i := range parts {
				parts[i] = genValue(rng, "", depth+1)
			}
			return "[" + strings.Join(parts, ",") + "]"
		}
	}
	return others[rng.IntN(len(others))]
}

// genDoc makes an object whose first member is a small connect timeout.
func genDoc(rng *rand.Rand) []byte {
	ws := []string{"", " ", "\n", "\t", "\r\n "}
	w := func() string { return ws[rng.IntN(len(ws))] }
	var b strings.Builder
	b.WriteString(w() + `{"connectTimeoutSeconds":0.01`)
	for range rng.IntN(6) {
		k := keys[rng.IntN(len(keys))]
		fmt.Fprintf(&b, `,%s"%s"%s:%s%s`, w(), k, w(), w(), genValue(rng, k, 0))
	}
	b.WriteString("}" + w())
	return []byte(b.String())
}

// mutate deletes, inserts or replaces one byte after the first member.
func mutate(rng *rand.Rand, c []byte) []byte {
	out := bytes.Clone(c)
	first := bytes.Index(out, []byte("0.01")) + 5 // past the member and what follows it
	if first >= len(out) {
		return out
	}
	i := first + rng.IntN(len(out)-first)
	special := []byte(`{}[],:"\ 0e-.tnu` + "\x00\xff")
	switch rng.IntN(3) {
	case 0:
		return append(out[:i], out[i+1:]...)
	case 1:
		return append(out[:i], append([]byte{special[rng.IntN(len(special))]}, out[i:]...)...)
	default:
		out[i] = special[rng.IntN(len(special))]
		return out
	}
}
