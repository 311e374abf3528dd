// Package local is the file-backed source of local mode: a directory of YAML
// (or JSON) manifests holding NetworkAttachmentDefinitions and Pods, the same
// schema as in a cluster. Every lookup checks the directory, so edits apply
// to the next CNI call without a restart; parsed objects are reused while no
// file's name, size or modification time changed. A file that does not parse
// is an error naming the file, and does not hide objects in other files.
package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/plexus-cni/plexus/agent/source"
)

// maxFileSize bounds one manifest file.
const maxFileSize = 4 << 20

// Dir reads manifests from a directory.
type Dir struct {
	Path string

	mu     sync.Mutex
	sig    string
	parsed *objects
}

type object struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
}

type objects struct {
	pods map[string]*source.Pod
	nads map[string]*nadv1.NetworkAttachmentDefinition
	errs []error
}

// load reads every manifest. Documents that fail to parse are collected in
// errs with their file name; lookups of other objects still succeed.
func (d *Dir) load() (*objects, error) {
	entries, err := os.ReadDir(d.Path)
	if err != nil {
		return nil, fmt.Errorf("read local manifests: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || strings.HasPrefix(n, ".") {
			continue
		}
		switch filepath.Ext(n) {
		case ".yaml", ".yml", ".json":
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var sig strings.Builder
	for _, n := range names {
		st, err := os.Stat(filepath.Join(d.Path, n))
		if err != nil {
			continue // removed meanwhile; loadFile below would report it
		}
		fmt.Fprintf(&sig, "%s\x00%d\x00%d\x00", n, st.Size(), st.ModTime().UnixNano())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.parsed != nil && d.sig == sig.String() {
		return d.parsed, nil
	}
	objs := &objects{pods: map[string]*source.Pod{}, nads: map[string]*nadv1.NetworkAttachmentDefinition{}}
	for _, n := range names {
		objs.loadFile(filepath.Join(d.Path, n))
	}
	d.sig, d.parsed = sig.String(), objs
	return objs, nil
}

func (o *objects) loadFile(path string) {
	st, err := os.Stat(path)
	if err != nil {
		o.errs = append(o.errs, err)
		return
	}
	if st.Size() > maxFileSize {
		o.errs = append(o.errs, fmt.Errorf("%s: %d bytes, over the %d byte limit", path, st.Size(), maxFileSize))
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		o.errs = append(o.errs, err)
		return
	}
	for i, doc := range splitDocuments(data) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		if err := o.addDocument(doc); err != nil {
			o.errs = append(o.errs, fmt.Errorf("%s, document %d: %w", path, i+1, err))
		}
	}
}

func (o *objects) addDocument(doc []byte) error {
	var head object
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	ns := head.Metadata.Namespace
	if ns == "" {
		ns = "default"
	}
	key := ns + "/" + head.Metadata.Name
	switch head.Kind {
	case "Pod":
		o.pods[key] = &source.Pod{Namespace: ns, Name: head.Metadata.Name, UID: string(head.Metadata.UID), Annotations: head.Metadata.Annotations}
	case "NetworkAttachmentDefinition":
		var nad nadv1.NetworkAttachmentDefinition
		if err := yaml.UnmarshalStrict(doc, &nad); err != nil {
			return fmt.Errorf("NetworkAttachmentDefinition %s: %w", key, err)
		}
		nad.Namespace = ns
		o.nads[key] = &nad
	default:
		// Other kinds (e.g. a Namespace) may share the directory.
	}
	return nil
}

// splitDocuments splits a YAML stream on "---" separator lines.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur []byte
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if t := bytes.TrimRight(line, " \t\r\n"); bytes.Equal(t, []byte("---")) {
			docs = append(docs, cur)
			cur = nil
			continue
		}
		cur = append(cur, line...)
	}
	return append(docs, cur)
}

// GetPod implements source.PodGetter.
func (d *Dir) GetPod(_ context.Context, namespace, name string) (*source.Pod, error) {
	return lookup(d, "pod", namespace, name, func(o *objects) map[string]*source.Pod { return o.pods })
}

// Pod is the pod of "namespace/name", nil if the manifests have none.
func (d *Dir) Pod(key string) *source.Pod {
	objs, err := d.load()
	if err != nil {
		return nil
	}
	return objs.pods[key]
}

// Watch calls changed with every pod of the manifests at start and each
// time a file changes, and gone with the "namespace/name" of each pod
// that is no longer there, until ctx ends. It looks every interval (a
// stat of each file, as every lookup does).
func (d *Dir) Watch(ctx context.Context, interval time.Duration, changed func(*source.Pod), gone func(key string)) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last *objects
	for {
		// A directory that cannot be read now is looked at again next time.
		if objs, err := d.load(); err == nil && objs != last {
			for _, p := range objs.pods {
				changed(p)
			}
			if last != nil {
				for key := range last.pods {
					if _, ok := objs.pods[key]; !ok {
						gone(key)
					}
				}
			}
			last = objs
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// GetNAD implements source.NADGetter.
func (d *Dir) GetNAD(_ context.Context, namespace, name string) (*nadv1.NetworkAttachmentDefinition, error) {
	return lookup(d, "NetworkAttachmentDefinition", namespace, name,
		func(o *objects) map[string]*nadv1.NetworkAttachmentDefinition { return o.nads })
}

// lookup finds namespace/name among the objects of one kind (picked by of)
// in d's manifests.
func lookup[T any](d *Dir, kind, namespace, name string, of func(*objects) map[string]*T) (*T, error) {
	objs, err := d.load()
	if err != nil {
		return nil, err
	}
	if obj, ok := of(objs)[namespace+"/"+name]; ok {
		return obj, nil
	}
	err = fmt.Errorf("%s %s/%s not in %s: %w", kind, namespace, name, d.Path, source.ErrNotFound)
	if len(objs.errs) > 0 {
		// A broken file may be the one that should have held it.
		err = fmt.Errorf("%w (files that did not parse: %w)", err, errors.Join(objs.errs...))
	}
	return nil, err
}

var _ source.NADGetter = (*Dir)(nil)
var _ source.PodGetter = (*Dir)(nil)
