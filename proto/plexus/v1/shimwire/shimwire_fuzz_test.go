package shimwire_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	plexusv1 "github.com/plexus-cni/plexus/proto/plexus/v1"
	"github.com/plexus-cni/plexus/proto/plexus/v1/shimwire"
)

// FuzzUnmarshalCNIResponse checks that the shim's decoder never panics and,
// whenever the generated code accepts the input, decodes the same value. The
// seed corpus is in testdata/fuzz/FuzzUnmarshalCNIResponse.
func FuzzUnmarshalCNIResponse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := shimwire.UnmarshalCNIResponse(data)
		if err == nil && got == nil {
			t.Fatal("UnmarshalCNIResponse returned neither a response nor an error")
		}
		var want plexusv1.CNIResponse
		if proto.Unmarshal(data, &want) != nil {
			return
		}
		if err != nil {
			t.Fatalf("UnmarshalCNIResponse(%x): %v; the generated code decodes %v", data, err, &want)
		}
		if !equalResponse(got, &want) {
			t.Fatalf("UnmarshalCNIResponse(%x) = %+v (error %+v); the generated code decodes %v", data, got, got.Error, &want)
		}
	})
}
