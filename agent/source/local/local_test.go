package local_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plexus-cni/plexus/agent/source"
	"github.com/plexus-cni/plexus/agent/source/local"
)

func write(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

const podYAML = `apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: apps
  uid: u-1
  annotations:
    k8s.v1.cni.cncf.io/networks: %s
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata:
  name: blue
  annotations: {k8s.v1.cni.cncf.io/resourceName: example.com/sriov}
spec:
  config: '{"cniVersion":"1.0.0","type":"bridge"}'
`

// Objects of several kinds in one multi-document file; the namespace
// defaults to "default"; an edit is seen by the next lookup.
func TestLookupAndReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "objs.yaml")
	base := time.Now().Add(-time.Hour)
	write(t, path, strings.Replace(podYAML, "%s", "blue", 1), base)
	d := &local.Dir{Path: dir}
	ctx := context.Background()

	pod, err := d.GetPod(ctx, "apps", "web")
	if err != nil {
		t.Fatal(err)
	}
	if pod.UID != "u-1" || pod.Annotations[source.NetworksAnnotation] != "blue" {
		t.Errorf("pod = %+v", pod)
	}
	nad, err := d.GetNAD(ctx, "default", "blue")
	if err != nil {
		t.Fatal(err)
	}
	if nad.Annotations[source.ResourceNameAnnotation] != "example.com/sriov" || !strings.Contains(nad.Spec.Config, "bridge") {
		t.Errorf("nad = %+v", nad)
	}

	write(t, path, strings.Replace(podYAML, "%s", "blue,blue", 1), base.Add(time.Minute))
	pod, err = d.GetPod(ctx, "apps", "web")
	if err != nil {
		t.Fatal(err)
	}
	if got := pod.Annotations[source.NetworksAnnotation]; got != "blue,blue" {
		t.Errorf("after the edit the annotation is %q, want blue,blue", got)
	}
}

// A broken file does not hide objects of other files, and a lookup that
// misses names the broken file; misses wrap source.ErrNotFound.
func TestBrokenFile(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	write(t, filepath.Join(dir, "a.yaml"), strings.Replace(podYAML, "%s", "blue", 1), now)
	write(t, filepath.Join(dir, "b.yaml"), "kind: NetworkAttachmentDefinition\nmetadata: {name: red}\nspec: {config: 1, bogus: x}\n", now)
	write(t, filepath.Join(dir, "c.yaml"), "kind: [", now)
	d := &local.Dir{Path: dir}
	ctx := context.Background()
	if _, err := d.GetPod(ctx, "apps", "web"); err != nil {
		t.Errorf("pod in a good file: %v", err)
	}
	_, err := d.GetNAD(ctx, "default", "red")
	if !errors.Is(err, source.ErrNotFound) {
		t.Fatalf("err = %v, want source.ErrNotFound", err)
	}
	for _, want := range []string{"default/red", "b.yaml", "c.yaml"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if _, err := (&local.Dir{Path: filepath.Join(dir, "nope")}).GetPod(ctx, "a", "b"); err == nil {
		t.Error("missing directory: no error")
	}
}
