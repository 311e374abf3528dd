package record_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/plexus-cni/plexus/agent/record"
)

func openStore(t *testing.T) *record.Store {
	t.Helper()
	s, err := record.Open(filepath.Join(t.TempDir(), "records"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func sampleRecord(containerID, ifname string) *record.Record {
	return &record.Record{
		ContainerID:  containerID,
		IfName:       ifname,
		Netns:        "/var/run/netns/" + containerID,
		PodNamespace: "ns1",
		PodName:      "pod1",
		PodUID:       "uid-1",
		Complete:     true,
		Attachments: []record.Attachment{{
			Network:        "kube-system/cluster",
			IfName:         "eth0",
			Config:         json.RawMessage(`{"cniVersion":"1.0.0","name":"cluster","plugins":[{"type":"bridge"}]}`),
			CapabilityArgs: map[string]any{"portMappings": []any{map[string]any{"hostPort": float64(80)}}},
			Args:           [][2]string{{"K8S_POD_NAME", "pod1"}},
			Default:        true,
			Result:         json.RawMessage(`{"cniVersion":"1.0.0","ips":[{"address":"10.1.1.5/24"}]}`),
			DeviceInfoFile: "/var/run/k8s.cni.cncf.io/devinfo/cni/x.json",
		}, {
			Network: "ns1/net1",
			IfName:  "net1",
			Config:  json.RawMessage(`{"cniVersion":"1.0.0","name":"net1","plugins":[{"type":"macvlan"}]}`),
		}},
		Status: json.RawMessage(`[{"name":"cluster","default":true}]`),
	}
}

func TestPutGetDeleteRoundTrip(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	in := sampleRecord("abc123", "eth0")
	if err := s.Put(in); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if in.Version != record.FormatVersion {
		t.Errorf("Put left Version = %d, want %d", in.Version, record.FormatVersion)
	}
	got, err := s.Get("abc123", "eth0")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if !reflect.DeepEqual(got, in) {
		t.Errorf("Get =\n %+v\nwant\n %+v", got, in)
	}

	// Another ifname of the same container is a different record.
	if _, err := s.Get("abc123", "eth1"); !errors.Is(err, record.ErrNotFound) {
		t.Errorf("Get of another ifname: %v, want ErrNotFound", err)
	}

	if err := s.Delete("abc123", "eth0"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get("abc123", "eth0"); !errors.Is(err, record.ErrNotFound) {
		t.Errorf("Get after Delete: %v, want ErrNotFound", err)
	}
	// Deleting again (a missing record) is not an error.
	if err := s.Delete("abc123", "eth0"); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if err := s.Delete("never-existed", "eth0"); err != nil {
		t.Errorf("Delete of a missing record: %v", err)
	}
}

func TestPutReplacesWhole(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	p := filepath.Join(s.Dir(), "c1_eth0.json")
	// A longer pre-existing file: a non-atomic in-place write would leave its tail.
	if err := os.WriteFile(p, []byte(`{"version":1,"containerID":"c1","ifname":"eth0","netns":"`+strings.Repeat("x", 4096)+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := s.Get("c1", "eth0")
	if err != nil {
		t.Fatalf("Get of pre-existing record: %v", err)
	}
	if len(before.Netns) != 4096 {
		t.Fatalf("pre-existing record netns has %d bytes", len(before.Netns))
	}

	in := &record.Record{ContainerID: "c1", IfName: "eth0", Netns: "/short"}
	if err := s.Put(in); err != nil {
		t.Fatalf("Put: %v", err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var onDisk record.Record
	if err := json.Unmarshal(data, &onDisk); err != nil {
		t.Fatalf("file after Put is not one JSON record: %v\n%s", err, data)
	}
	if onDisk.Netns != "/short" || onDisk.Version != record.FormatVersion {
		t.Errorf("file after Put = %+v", onDisk)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("replaced file mode = %v, want 0600", st.Mode().Perm())
	}
	assertNoTempFiles(t, s.Dir())
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") || strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temp file %s left in %s", e.Name(), dir)
		}
	}
}

func TestModes(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "a", "b")
	s, err := record.Open(dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if s.Dir() != dir {
		t.Errorf("Dir() = %q, want %q", s.Dir(), dir)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Errorf("record dir mode = %v, want a 0700 directory", st.Mode())
	}
	for i, id := range []string{"c1", "c2", "c3"} {
		if err := s.Put(sampleRecord(id, "eth0")); err != nil {
			t.Fatalf("Put %d: %v", i, err)
		}
		st, err := os.Stat(filepath.Join(dir, id+"_eth0.json"))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("record %s mode = %v, want 0600", id, st.Mode().Perm())
		}
	}
	assertNoTempFiles(t, dir)

	// Open of an existing store keeps its records.
	s2, err := record.Open(dir)
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	if _, err := s2.Get("c2", "eth0"); err != nil {
		t.Errorf("Get after reopen: %v", err)
	}
}

func TestInvalidIDs(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	tests := []struct {
		containerID, ifname string
	}{
		{"../x", "eth0"},
		{"", "eth0"},
		{"a/b", "eth0"},
		{".hidden", "eth0"},
		{"..", "eth0"},
		{"-leading-dash", "eth0"},
		{"_leading", "eth0"},
		{"a b", "eth0"},
		{"a\x00b", "eth0"},
		{strings.Repeat("a", 1025), "eth0"},
		{"good", ""},
		{"good", "a/b"},
		{"good", "."},
		{"good", ".."},
		{"good", "a\x00b"},
		{"good", "../../etc"},
	}
	for _, tt := range tests {
		r := sampleRecord(tt.containerID, tt.ifname)
		if err := s.Put(r); err == nil {
			t.Errorf("Put(%q, %q) succeeded", tt.containerID, tt.ifname)
		}
		if _, err := s.Get(tt.containerID, tt.ifname); err == nil || errors.Is(err, record.ErrNotFound) {
			t.Errorf("Get(%q, %q) = %v, want an invalid-ID error", tt.containerID, tt.ifname, err)
		}
		if err := s.Delete(tt.containerID, tt.ifname); err == nil {
			t.Errorf("Delete(%q, %q) succeeded", tt.containerID, tt.ifname)
		}
	}
	// Nothing escaped the store directory.
	parent := filepath.Dir(s.Dir())
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("files outside the store: %v", names)
	}
	if recs, damaged, err := s.List(); err != nil || len(recs) != 0 || len(damaged) != 0 {
		t.Errorf("List = %d records, %d damaged, %v; want none", len(recs), len(damaged), err)
	}
}

func TestValidContainerID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id   string
		want bool
	}{
		{"abc123", true},
		{"A", true},
		{"0", true},
		{"a.b_c-d", true},
		{"f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f", true},
		{strings.Repeat("a", 1024), true},
		{strings.Repeat("a", 1025), false},
		{"", false},
		{".a", false},
		{"-a", false},
		{"a/b", false},
		{"../x", false},
		{"a:b", false},
		{"a\nb", false},
	}
	for _, tt := range tests {
		if got := record.ValidContainerID(tt.id); got != tt.want {
			t.Errorf("ValidContainerID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestGetOtherVersion(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	for _, v := range []int{0, record.FormatVersion + 1} {
		data, err := json.Marshal(map[string]any{"version": v, "containerID": "c1", "ifname": "eth0"})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.Dir(), "c1_eth0.json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := s.Get("c1", "eth0")
		if err == nil {
			t.Errorf("Get of a version %d record = %+v, want an error", v, r)
			continue
		}
		if errors.Is(err, record.ErrNotFound) {
			t.Errorf("Get of a version %d record: %v, want a version error, not ErrNotFound", v, err)
		}
	}
}

// A truncated or empty record is damage: Get and List say which file, and
// Quarantine moves it where List no longer sees it, bytes intact.
func TestDamaged(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	for _, k := range [][2]string{{"c2", "eth0"}, {"c1", "eth1"}, {"c1", "eth0"}, {"c3", "eth0"}} {
		if err := s.Put(sampleRecord(k[0], k[1])); err != nil {
			t.Fatalf("Put %v: %v", k, err)
		}
	}
	full, err := os.ReadFile(filepath.Join(s.Dir(), "c1_eth0.json"))
	if err != nil {
		t.Fatal(err)
	}
	truncated := full[:len(full)/2]
	if err := os.WriteFile(filepath.Join(s.Dir(), "c1_eth0.json"), truncated, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir(), "c_x_net_1.json"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// Not records: a non-JSON file and a directory.
	if err := os.WriteFile(filepath.Join(s.Dir(), "notes.txt"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(s.Dir(), "sub.json"), 0o700); err != nil {
		t.Fatal(err)
	}

	_, err = s.Get("c1", "eth0")
	var d *record.DamagedError
	if !errors.As(err, &d) || d.Path != filepath.Join(s.Dir(), "c1_eth0.json") || !strings.Contains(err.Error(), "c1_eth0.json") {
		t.Fatalf("Get of a truncated record: %v, want a DamagedError naming the file", err)
	}
	var syntaxErr *json.SyntaxError
	if errors.Is(err, record.ErrNotFound) || (!errors.As(err, &syntaxErr) && !strings.Contains(err.Error(), "unexpected end")) {
		t.Errorf("Get of a truncated record: %v, want the JSON error wrapped", err)
	}
	if keys := d.Keys(); !reflect.DeepEqual(keys, [][2]string{{"c1", "eth0"}}) {
		t.Errorf("Keys = %v", keys)
	}

	recs, damaged, err := s.List()
	if err != nil {
		t.Errorf("List: %v", err)
	}
	var got [][2]string
	for _, r := range recs {
		got = append(got, [2]string{r.ContainerID, r.IfName})
	}
	if want := [][2]string{{"c1", "eth1"}, {"c2", "eth0"}, {"c3", "eth0"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
	if len(recs) == 3 && !reflect.DeepEqual(recs[1], sampleRecordWithVersion("c2", "eth0")) {
		t.Errorf("List record c2 = %+v", recs[1])
	}
	var names []string
	for _, d := range damaged {
		names = append(names, filepath.Base(d.Path))
	}
	if !reflect.DeepEqual(names, []string{"c1_eth0.json", "c_x_net_1.json"}) {
		t.Fatalf("damaged = %v", names)
	}
	if keys := damaged[1].Keys(); !reflect.DeepEqual(keys, [][2]string{{"c", "x_net_1"}, {"c_x", "net_1"}, {"c_x_net", "1"}}) {
		t.Errorf("Keys of c_x_net_1 = %v", keys)
	}

	moved, err := s.Quarantine(damaged[0])
	if err != nil {
		t.Fatal(err)
	}
	if kept, err := os.ReadFile(moved); err != nil || string(kept) != string(truncated) {
		t.Errorf("quarantined file %s: %q, %v; want the damaged bytes", moved, kept, err)
	}
	if filepath.Dir(moved) != s.Dir() {
		t.Errorf("quarantined to %s, outside the store", moved)
	}
	if _, err := s.Get("c1", "eth0"); !errors.Is(err, record.ErrNotFound) {
		t.Errorf("Get after Quarantine: %v, want ErrNotFound", err)
	}
	if _, damaged, err := s.List(); err != nil || len(damaged) != 1 {
		t.Errorf("List after Quarantine: %d damaged, %v; want 1 (the empty file)", len(damaged), err)
	}
}

func sampleRecordWithVersion(containerID, ifname string) *record.Record {
	r := sampleRecord(containerID, ifname)
	r.Version = record.FormatVersion
	return r
}

func TestListEmptyAndMissing(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	recs, damaged, err := s.List()
	if err != nil || len(recs) != 0 || len(damaged) != 0 {
		t.Errorf("List of an empty store = %v, %v, %v", recs, damaged, err)
	}
	if err := os.Remove(s.Dir()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.List(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("List of a removed dir: %v, want os.ErrNotExist", err)
	}
}
