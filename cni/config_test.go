package cni_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/plexus-cni/plexus/internal/shimbin"
)

// reference is what encoding/json makes of a network configuration under
// the shim's rules: the whole input is one JSON value, an object; the keys
// cniVersion and socketPath hold strings, connectTimeoutSeconds and
// timeoutSeconds numbers that fit a float64; null leaves a field as it was;
// the last duplicate wins; keys match exactly (JSON is case sensitive, so
// unlike Go struct decoding "CNIVERSION" is another key). It returns the
// cniVersion and whether the config is accepted.
func reference(b []byte) (string, bool) {
	if !json.Valid(b) {
		return "", false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "", false
	}
	version := ""
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return "", false
		}
		if string(raw) == "null" {
			continue
		}
		switch key {
		case "cniVersion", "socketPath":
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return "", false
			}
			if key == "cniVersion" {
				version = s
			}
		case "connectTimeoutSeconds", "timeoutSeconds":
			var f float64
			if err := json.Unmarshal(raw, &f); err != nil {
				return "", false
			}
		}
	}
	return version, true
}

// checkAgainstReference runs the shim on config with an unknown command,
// which it answers right after reading the config: code 4 with the config's
// cniVersion when it accepts the config, code 6 when it does not. Either
// must be what the reference decides, byte for byte.
func checkAgainstReference(t *testing.T, config []byte) {
	t.Helper()
	r := shim(t, map[string]string{"CNI_COMMAND": "BOGUS"}, config)
	version, ok := reference(config)
	var want []byte
	if ok {
		want, _ = json.Marshal(cniError{CNIVersion: version, Code: 4, Msg: `unknown CNI_COMMAND "BOGUS"`})
	} else {
		want = []byte(`{"code":6,"msg":"decode network configuration from stdin","details":`)
	}
	if r.exit != 1 || (ok && !bytes.Equal(r.stdout, want)) || (!ok && !bytes.HasPrefix(r.stdout, want)) {
		t.Errorf("config %q:\nshim  (exit %d) %s\nwant  %s", config, r.exit, r.stdout, want)
	}
}

// Hand-picked edges of JSON and of the four fields.
var configSeeds = []string{
	`{}`, ` {"cniVersion":"1.0.0"} `, "\t{\r\n}\n", `{"cniVersion":null}`, `{"cniVersion":"0.4.0","cniVersion":null}`,
	`{"cniVersion":"0.4.0","cniVersion":"1.1.0"}`, `{"CNIVersion":"x","cniVersion":"1.0.0"}`, `{"CNIVERSION":5}`,
	`{"cni\u0056ersion":"esc"}`, `{"cniVersion":"\ud83d\ude00 \ud83d x \ude00 \u00e9\/\b\f\n\r\t\"\\"}`,
	"{\"cniVersion\":\"\xff\xc3\x28 \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82\"}", "{\"cniVersion\":\"\x7f\"}",
	`{"cniVersion":"\u2028\u2029<>&"}`, `{"cniVersion":"a\u0000b"}`, `{"timeoutSeconds":-0}`, `{"timeoutSeconds":1e-400}`, `{"timeoutSeconds":1.7976931348623157e308}`,
	`{"timeoutSeconds":1.7976931348623159e308}`, `{"timeoutSeconds":-1e309}`, `{"timeoutSeconds":1E+2}`, `{"timeoutSeconds":01}`,
	`{"timeoutSeconds":1.}`, `{"timeoutSeconds":.5}`, `{"timeoutSeconds":+1}`, `{"timeoutSeconds":1e}`, `{"timeoutSeconds":-}`,
	`{"timeoutSeconds":true}`, `{"connectTimeoutSeconds":[1]}`, `{"socketPath":{}}`, `{"socketPath":"\u0000"}`,
	`{"x":[],"y":{},"z":[{}],"w":[[[]]],"v":[1,"a",null,true,false,{"k":[]}]}`, `{"a":1 "b":2}`, `{"a":[1 2]}`,
	`{"a":[1,]}`, `{"a":{"b"}}`, `{"a":{"b":}}`, `{"a" 1}`, `{1:2}`, `{"a":tru}`, `{"a":nul}`, `{"a":"\x}`, `{"a":"\u12"}`,
	`{"a":"\uZZZZ"}`, `{"a":"unterminated}`, "{\"a\":\"tab\there\"}", `{"a":1}x`, `{"a":1}}`, `{"a":1}{}`, `"str"`, `[]`,
	`1`, `null`, `true`, ``, ` `, "\xef\xbb\xbf{}", `{"a":-01}`, `{"a":1e+}`, `{"a":0.0e-0}`, `{"a":[` + strings.Repeat("[", 9997) + strings.Repeat("]", 9997) + `]}`,
	`{"a":[` + strings.Repeat("[", 9998) + strings.Repeat("]", 9998) + `]}`, strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
}

func TestConfigMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, c := range configSeeds {
		checkAgainstReference(t, []byte(c))
	}
}

// Generated configs, valid and then mutated, from a fixed seed so a
// failure reproduces.
func TestConfigGeneratedMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	shimbin.Path(t) // here, not in the workers: it may Fatalf
	rng := rand.New(rand.NewPCG(1, 2))
	var configs [][]byte
	for range 300 {
		c := genConfig(rng)
		configs = append(configs, c, mutate(rng, c))
	}
	work := make(chan []byte)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				checkAgainstReference(t, c)
			}
		}()
	}
	for _, c := range configs {
		work <- c
	}
	close(work)
	wg.Wait()
}

func FuzzConfig(f *testing.F) {
	for _, c := range configSeeds {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, config []byte) {
		if len(config) > 1<<20 {
			t.Skip("larger than any config the fuzzer needs")
		}
		checkAgainstReference(t, config)
	})
}

var (
	keys    = []string{"cniVersion", "socketPath", "connectTimeoutSeconds", "timeoutSeconds", "name", "type", "cniversion", "cni\\u0056ersion", "", "ñ"}
	strs    = []string{`""`, `"1.0.0"`, `"0.4.0"`, `"a\"b"`, `"\u00e9\ud83d\ude00"`, `"\ud800"`, `"<&>"`, "\"\xff\xfe\"", `"\\\/\b\f\n\r\t"`}
	numbers = []string{"0", "-0", "1", "-1.5", "2.5e3", "1E-7", "1e400", "123456789012345678901234567890", "0.000001"}
	others  = []string{"null", "true", "false", "[]", "{}", `[1,"x",{"a":null}]`, `{"k":{"k":[true]}}`}
)

func genValue(rng *rand.Rand, depth int) string {
	switch rng.IntN(4) {
	case 0:
		return strs[rng.IntN(len(strs))]
	case 1:
		return numbers[rng.IntN(len(numbers))]
	case 2:
		if depth < 3 {
			n := rng.IntN(3)
			parts := make([]string, n)
			for i := range parts {
				parts[i] = genValue(rng, depth+1)
			}
			return "[" + strings.Join(parts, ",") + "]"
		}
	}
	return others[rng.IntN(len(others))]
}

func genConfig(rng *rand.Rand) []byte {
	ws := []string{"", " ", "\n", "\t", "\r\n "}
	n := rng.IntN(6)
	var b strings.Builder
	b.WriteString(ws[rng.IntN(len(ws))] + "{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `%s"%s"%s:%s%s`, ws[rng.IntN(len(ws))], keys[rng.IntN(len(keys))], ws[rng.IntN(len(ws))],
			ws[rng.IntN(len(ws))], genValue(rng, 0))
	}
	b.WriteString("}" + ws[rng.IntN(len(ws))])
	return []byte(b.String())
}

// mutate deletes, inserts or replaces one byte.
func mutate(rng *rand.Rand, c []byte) []byte {
	out := bytes.Clone(c)
	i := rng.IntN(len(out))
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
