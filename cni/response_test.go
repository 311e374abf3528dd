package cni_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/plexus-cni/plexus/internal/shimbin"
	plexusv1 "github.com/plexus-cni/plexus/proto/plexus/v1"
)

// mirror is plexus.v1.CNIResponse with only the fields a raw_output shim
// reads, stdout and exit_code: to protobuf-go, as to the shim, the others
// are unknown fields. protobuf-go decoding a mirror is the reference for
// what the shim makes of a response.
var mirror = func() protoreflect.MessageDescriptor {
	field := func(name string, num int32, typ descriptorpb.FieldDescriptorProto_Type) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num), Type: typ.Enum(),
			Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), JsonName: proto.String(name)}
	}
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name: proto.String("cni_test/mirror.proto"), Package: proto.String("mirror"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("CNIResponse"), Field: []*descriptorpb.FieldDescriptorProto{
			field("stdout", 3, descriptorpb.FieldDescriptorProto_TYPE_BYTES),
			field("exit_code", 4, descriptorpb.FieldDescriptorProto_TYPE_UINT32),
		}}},
	}, nil)
	if err != nil {
		panic(err) // a bug in the literal above
	}
	return fd.Messages().ByName("CNIResponse")
}()

// hasGroup reports whether a well-formed message has a top-level group,
// which the shim refuses (proto3 has none) and protobuf-go skips.
func hasGroup(b []byte) bool {
	for len(b) > 0 {
		_, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		if typ == protowire.StartGroupType {
			return true
		}
		b = b[n:]
		n = protowire.ConsumeFieldValue(0, typ, b)
		if n < 0 {
			return false
		}
		b = b[n:]
	}
	return false
}

// checkResponse has a fake agent accept the call and answer with body as
// the CNIResponse, and compares the shim's output with the reference.
func checkResponse(t *testing.T, body []byte) {
	t.Helper()
	frame := append([]byte{0x04, 0x08, 0x01, 0x20, 0x01}, protowire.AppendBytes(nil, body)...) // HelloReply{api_version: 1, raw_output: true}, then body
	a := newAgent(t, func(c net.Conn, _ *plexusv1.Hello, _ *plexusv1.CNIRequest) { c.Write(frame) })
	r := shim(t, map[string]string{"CNI_COMMAND": "ADD"}, []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","socketPath":%q}`, a.path)))

	m := dynamicpb.NewMessage(mirror)
	err := proto.Unmarshal(body, m)
	var want []byte
	wantExit := 1
	if err != nil || hasGroup(body) {
		want, _ = json.Marshal(cniError{Code: 11, Msg: "plexus agent not available", Details: "agent socket " + a.path + ": decode CNIResponse: malformed message"})
	} else {
		want = m.Get(mirror.Fields().ByNumber(3)).Bytes()
		if code := m.Get(mirror.Fields().ByNumber(4)).Uint(); code < 256 {
			wantExit = int(code)
		}
	}
	if r.exit != wantExit || !bytes.Equal(r.stdout, want) {
		t.Errorf("response %x (protobuf-go: %v):\nshim (exit %d) %q\nwant (exit %d) %q", body, err, r.exit, r.stdout, wantExit, want)
	}
}

func responseSeeds() [][]byte {
	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	str := func(num protowire.Number, s string) []byte {
		return protowire.AppendBytes(tag(num, protowire.BytesType), []byte(s))
	}
	code := func(v uint64) []byte { return protowire.AppendVarint(tag(4, protowire.VarintType), v) }
	return [][]byte{
		nil,
		str(3, `{"cniVersion":"1.0.0"}`),
		cat(str(3, "a"), str(3, "b")),
		cat(str(3, `{"code":7}`), code(1)),
		cat(code(7), code(0)),
		code(1<<32 + 5), // truncated to 5, as a uint32 is
		code(256),
		cat(str(3, "nul\x00inside \xff"), code(3)),
		cat(str(1, "legacy result"), str(2, "\x08\x07\x12\x02\xff\xfe"), str(3, "new")), // fields for older shims, invalid UTF-8 in them
		cat(tag(3, protowire.VarintType), []byte{5}),                                    // stdout with the wrong wire type: unknown
		cat(tag(4, protowire.Fixed32Type), []byte{1, 2, 3, 4}),                          // exit_code with the wrong wire type: unknown
		cat(tag(9, protowire.Fixed64Type), make([]byte, 8), str(3, "r")),
		cat(group(5, 1, str(1, "in group")), str(3, "r")),
		cat(tag(1<<29-1, protowire.VarintType), []byte{1}),
		cat(tag(1<<30, protowire.VarintType), []byte{1}),
		tag(5, protowire.EndGroupType),
		{0x00},
		{0x0e},            // wire type 6
		{0x1a, 0x05, 'x'}, // truncated bytes
		{0x20},            // truncated varint
		cat(tag(4, protowire.VarintType), bytes.Repeat([]byte{0xff}, 9), []byte{0x02}), // varint overflow
		cat(tag(4, protowire.VarintType), bytes.Repeat([]byte{0xff}, 9), []byte{0x01}), // largest varint
		bytes.Repeat([]byte{0x80}, 11),
	}
}

func group(num protowire.Number, depth int, inner []byte) []byte {
	var b []byte
	for range depth {
		b = protowire.AppendTag(b, num, protowire.StartGroupType)
	}
	b = append(b, inner...)
	for range depth {
		b = protowire.AppendTag(b, num, protowire.EndGroupType)
	}
	return b
}

func TestResponseMatchesProtobuf(t *testing.T) {
	t.Parallel()
	shimbin.Path(t)
	for _, body := range responseSeeds() {
		checkResponse(t, body)
	}
}

// FuzzResponse: go test ./cni -run XXX -fuzz FuzzResponse.
func FuzzResponse(f *testing.F) {
	for _, b := range responseSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 1<<20 {
			t.Skip("larger than the fuzzer needs")
		}
		checkResponse(t, body)
	})
}
