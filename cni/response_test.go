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

// mirror is plexus.v1.CNIResponse with its strings as bytes: the same
// wire format, but protobuf-go does not refuse invalid UTF-8 in it, which
// the shim passes on escaped. protobuf-go decoding a mirror is the
// reference for what the shim makes of a response.
var mirror = func() protoreflect.MessageDescriptor {
	field := func(name string, num int32, typ descriptorpb.FieldDescriptorProto_Type, msg string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num), Type: typ.Enum(),
			Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), JsonName: proto.String(name)}
		if msg != "" {
			f.TypeName = proto.String(msg)
		}
		return f
	}
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name: proto.String("cni_test/mirror.proto"), Package: proto.String("mirror"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Error"), Field: []*descriptorpb.FieldDescriptorProto{
				field("code", 1, descriptorpb.FieldDescriptorProto_TYPE_UINT32, ""),
				field("msg", 2, descriptorpb.FieldDescriptorProto_TYPE_BYTES, ""),
				field("details", 3, descriptorpb.FieldDescriptorProto_TYPE_BYTES, ""),
			}},
			{Name: proto.String("CNIResponse"), Field: []*descriptorpb.FieldDescriptorProto{
				field("result", 1, descriptorpb.FieldDescriptorProto_TYPE_BYTES, ""),
				field("error", 2, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, ".mirror.Error"),
			}},
		},
	}, nil)
	if err != nil {
		panic(err) // a bug in the literal above
	}
	return fd.Messages().ByName("CNIResponse")
}()

// checkResponse has a fake agent accept the call and answer with body as
// the CNIResponse, and compares the shim's output with the reference.
func checkResponse(t *testing.T, body []byte) {
	t.Helper()
	frame := append([]byte{0x02, 0x08, 0x01}, protowire.AppendBytes(nil, body)...) // HelloReply{api_version: 1}, then body
	a := newAgent(t, func(c net.Conn, _ *plexusv1.Hello, _ *plexusv1.CNIRequest) { c.Write(frame) })
	r := shim(t, map[string]string{"CNI_COMMAND": "ADD"}, []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","socketPath":%q}`, a.path)))

	m := dynamicpb.NewMessage(mirror)
	err := proto.Unmarshal(body, m)
	var want []byte
	wantExit := 1
	switch {
	case err != nil:
		want, _ = json.Marshal(cniError{CNIVersion: "1.0.0", Code: 11, Msg: "plexus agent not available", Details: "decode CNIResponse: malformed message"})
	case m.Has(mirror.Fields().ByNumber(2)):
		e := m.Get(mirror.Fields().ByNumber(2)).Message()
		ed := e.Descriptor().Fields()
		want, _ = json.Marshal(cniError{CNIVersion: "1.0.0", Code: uint32(e.Get(ed.ByNumber(1)).Uint()),
			Msg: string(e.Get(ed.ByNumber(2)).Bytes()), Details: string(e.Get(ed.ByNumber(3)).Bytes())})
	default:
		want, wantExit = m.Get(mirror.Fields().ByNumber(1)).Bytes(), 0
	}
	if r.exit != wantExit || !bytes.Equal(r.stdout, want) {
		t.Errorf("response %x (protobuf-go: %v):\nshim (exit %d) %q\nwant (exit %d) %q", body, err, r.exit, r.stdout, wantExit, want)
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

func responseSeeds() [][]byte {
	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	str := func(num protowire.Number, s string) []byte {
		return protowire.AppendBytes(tag(num, protowire.BytesType), []byte(s))
	}
	errMsg := func(parts ...[]byte) []byte { return protowire.AppendBytes(tag(2, protowire.BytesType), cat(parts...)) }
	code := func(v uint64) []byte { return protowire.AppendVarint(tag(1, protowire.VarintType), v) }
	return [][]byte{
		nil,
		str(1, `{"cniVersion":"1.0.0"}`),
		cat(str(1, "a"), str(1, "b")),
		errMsg(code(7), str(2, "msg"), str(3, "details")),
		errMsg(),
		cat(errMsg(code(7)), errMsg(str(2, "merged"))),
		cat(str(1, "result"), errMsg(code(1))),
		errMsg(code(1<<32+5), str(2, "\xff<>&\u2028")),
		errMsg(code(3), str(2, "nul\x00inside"), str(3, "and\x00here")),
		cat(tag(1, protowire.VarintType), []byte{5}),           // result with the wrong wire type: unknown
		cat(tag(2, protowire.Fixed32Type), []byte{1, 2, 3, 4}), // error with the wrong wire type: unknown
		cat(tag(9, protowire.Fixed64Type), make([]byte, 8), str(1, "r")),
		cat(group(5, 3, str(1, "in group")), str(1, "r")),
		group(5, 10001, nil),
		group(5, 10002, nil),
		cat(tag(5, protowire.StartGroupType), tag(1<<30, protowire.VarintType), []byte{1}, tag(5, protowire.EndGroupType)),
		cat(tag(1<<30, protowire.VarintType), []byte{1}),
		cat(tag(5, protowire.StartGroupType), tag(6, protowire.EndGroupType)),
		tag(5, protowire.EndGroupType),
		{0x00},
		{0x0e},            // wire type 6
		{0x0a, 0x05, 'x'}, // truncated bytes
		{0x08},            // truncated varint
		cat(tag(1, protowire.VarintType), bytes.Repeat([]byte{0xff}, 9), []byte{0x02}), // varint overflow
		cat(tag(1, protowire.VarintType), bytes.Repeat([]byte{0xff}, 9), []byte{0x01}), // largest varint
		bytes.Repeat([]byte{0x80}, 11),
	}
}

func TestResponseMatchesProtobuf(t *testing.T) {
	t.Parallel()
	shimbin.Path(t)
	for _, body := range responseSeeds() {
		checkResponse(t, body)
	}
}

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
