package shimwire_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	plexusv1 "github.com/plexus-cni/plexus/proto/plexus/v1"
	"github.com/plexus-cni/plexus/proto/plexus/v1/shimwire"
)

// randString returns a valid UTF-8 string of up to max runes drawn from ASCII,
// control characters, multi-byte scripts and astral-plane characters.
func randString(r *rand.Rand, max int) string {
	if r.IntN(4) == 0 {
		return ""
	}
	pools := [][2]rune{{0, 0x7f}, {0x20, 0x7e}, {0x80, 0x7ff}, {0x4e00, 0x9fff}, {0x1f300, 0x1faff}}
	var b strings.Builder
	n := r.IntN(max + 1)
	for range n {
		p := pools[r.IntN(len(pools))]
		b.WriteRune(p[0] + rune(r.IntN(int(p[1]-p[0]+1))))
	}
	return b.String()
}

func randBytes(r *rand.Rand, max int) []byte {
	switch r.IntN(5) {
	case 0:
		return nil
	case 1:
		max = 1 << 20 // a large config
	}
	b := make([]byte, r.IntN(max+1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func randUint32(r *rand.Rand) uint32 {
	switch r.IntN(4) {
	case 0:
		return 0
	case 1:
		return uint32(r.IntN(200))
	case 2:
		return 1<<32 - 1
	default:
		return r.Uint32()
	}
}

func requestsUnderTest(r *rand.Rand) []*shimwire.CNIRequest {
	reqs := []*shimwire.CNIRequest{
		{},
		{Verb: shimwire.VerbAdd},
		{Verb: shimwire.VerbDel, ContainerID: "abc", Netns: "/var/run/netns/x", Ifname: "eth0",
			Args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p", Path: "/opt/cni/bin:/usr/libexec/cni",
			Config: []byte(`{"cniVersion":"1.0.0","name":"plexus","type":"plexus"}`)},
		{Verb: shimwire.VerbGC, Config: bytes.Repeat([]byte{0xff, 0, 'x'}, 1<<20)},
		{Verb: shimwire.VerbStatus, Args: "ünïcödé ✓ 日本語 🚀", Path: "\x00\x01"},
		{Verb: shimwire.VerbCheck, ContainerID: strings.Repeat("c", 70000)},
		{Config: []byte{}},
		{Config: []byte{0}},
	}
	for range 300 {
		reqs = append(reqs, &shimwire.CNIRequest{
			Verb:        uint64(r.IntN(6)),
			ContainerID: randString(r, 80),
			Netns:       randString(r, 40),
			Ifname:      randString(r, 16),
			Args:        randString(r, 200),
			Path:        randString(r, 100),
			Config:      randBytes(r, 4096),
		})
	}
	return reqs
}

func TestMarshalCNIRequestMatchesGenerated(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for i, req := range requestsUnderTest(r) {
		b := shimwire.MarshalCNIRequest(req)
		var pb plexusv1.CNIRequest
		if err := proto.Unmarshal(b, &pb); err != nil {
			t.Fatalf("request %d: proto.Unmarshal: %v", i, err)
		}
		if uint64(pb.GetVerb()) != req.Verb || pb.GetContainerId() != req.ContainerID || pb.GetNetns() != req.Netns ||
			pb.GetIfname() != req.Ifname || pb.GetArgs() != req.Args || pb.GetPath() != req.Path ||
			!bytes.Equal(pb.GetConfig(), req.Config) {
			t.Fatalf("request %d: generated code decoded\n %v\nfrom\n %+v", i, &pb, req)
		}
		if len(pb.ProtoReflect().GetUnknown()) != 0 {
			t.Errorf("request %d: unknown fields %x", i, pb.ProtoReflect().GetUnknown())
		}
		// Byte for byte what the generated code writes.
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, want) {
			t.Errorf("request %d: shimwire wrote %x, generated code writes %x", i, b, want)
		}
	}
}

func TestMarshalHelloMatchesGenerated(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	hellos := []*shimwire.Hello{
		{},
		{APIVersion: shimwire.APIVersion1},
		{APIVersion: shimwire.APIVersion1, ShimVersion: "v1.2.3-dirty+ünï"},
		{ShimVersion: strings.Repeat("v", 1000)},
	}
	for range 200 {
		hellos = append(hellos, &shimwire.Hello{APIVersion: uint64(r.IntN(3)), ShimVersion: randString(r, 64)})
	}
	for i, h := range hellos {
		b := shimwire.MarshalHello(h)
		var pb plexusv1.Hello
		if err := proto.Unmarshal(b, &pb); err != nil {
			t.Fatalf("hello %d: proto.Unmarshal: %v", i, err)
		}
		if uint64(pb.GetApiVersion()) != h.APIVersion || pb.GetShimVersion() != h.ShimVersion {
			t.Fatalf("hello %d: generated code decoded %v from %+v", i, &pb, h)
		}
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, want) {
			t.Errorf("hello %d: shimwire wrote %x, generated code writes %x", i, b, want)
		}
	}
	if got := shimwire.MarshalHello(&shimwire.Hello{APIVersion: shimwire.APIVersion1}); !bytes.Equal(got, []byte{0x08, 0x01}) {
		t.Errorf("MarshalHello(API_VERSION_1) = %x, want 0801", got)
	}
}

func TestConstantsMatchGenerated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		got  uint64
		want int32
	}{
		{"APIVersion1", shimwire.APIVersion1, int32(plexusv1.APIVersion_API_VERSION_1)},
		{"VerbAdd", shimwire.VerbAdd, int32(plexusv1.Verb_VERB_ADD)},
		{"VerbDel", shimwire.VerbDel, int32(plexusv1.Verb_VERB_DEL)},
		{"VerbCheck", shimwire.VerbCheck, int32(plexusv1.Verb_VERB_CHECK)},
		{"VerbStatus", shimwire.VerbStatus, int32(plexusv1.Verb_VERB_STATUS)},
		{"VerbGC", shimwire.VerbGC, int32(plexusv1.Verb_VERB_GC)},
	}
	for _, tt := range tests {
		if tt.got != uint64(tt.want) {
			t.Errorf("%s = %d, generated value %d", tt.name, tt.got, tt.want)
		}
	}
}

func randPBError(r *rand.Rand) *plexusv1.Error {
	switch r.IntN(3) {
	case 0:
		return nil
	case 1:
		return &plexusv1.Error{} // present but empty
	}
	return &plexusv1.Error{Code: randUint32(r), Msg: randString(r, 100), Details: randString(r, 300)}
}

// equalError compares a decoded error with the generated one, presence included.
func equalError(got *shimwire.Error, want *plexusv1.Error) bool {
	if (got == nil) != (want == nil) {
		return false
	}
	if got == nil {
		return true
	}
	return got.Code == uint64(want.GetCode()) && got.Msg == want.GetMsg() && got.Details == want.GetDetails()
}

func equalResponse(got *shimwire.CNIResponse, want *plexusv1.CNIResponse) bool {
	return bytes.Equal(got.Result, want.GetResult()) && equalError(got.Error, want.GetError())
}

func equalHelloReply(got *shimwire.HelloReply, want *plexusv1.HelloReply) bool {
	return got.APIVersion == uint64(want.GetApiVersion()) && got.AgentVersion == want.GetAgentVersion() && equalError(got.Error, want.GetError())
}

func responsesUnderTest(r *rand.Rand) []*plexusv1.CNIResponse {
	resps := []*plexusv1.CNIResponse{
		{},
		{Result: []byte(`{"cniVersion":"1.1.0","interfaces":[{"name":"eth0"}]}`)},
		{Error: &plexusv1.Error{Code: 7, Msg: "invalid network config", Details: "field \"type\" ✗"}},
		{Error: &plexusv1.Error{}},
		{Error: &plexusv1.Error{Code: 1<<32 - 1}},
		{Result: bytes.Repeat([]byte("r"), 2<<20), Error: &plexusv1.Error{Msg: "both"}},
		{Result: []byte{}},
	}
	for range 300 {
		resps = append(resps, &plexusv1.CNIResponse{Result: randBytes(r, 2048), Error: randPBError(r)})
	}
	return resps
}

func TestUnmarshalCNIResponseFromGenerated(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(5, 6))
	for i, want := range responsesUnderTest(r) {
		b, err := proto.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := shimwire.UnmarshalCNIResponse(b)
		if err != nil {
			t.Fatalf("response %d: UnmarshalCNIResponse: %v", i, err)
		}
		if !equalResponse(got, want) {
			t.Fatalf("response %d: decoded %+v (error %+v), want %v", i, got, got.Error, want)
		}
	}
}

func TestUnmarshalHelloReplyFromGenerated(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(7, 8))
	replies := []*plexusv1.HelloReply{
		{},
		{ApiVersion: plexusv1.APIVersion_API_VERSION_1, AgentVersion: "v0.1.0"},
		{ApiVersion: plexusv1.APIVersion_API_VERSION_UNSPECIFIED, Error: &plexusv1.Error{Code: 1, Msg: "unsupported API version 2"}},
		{Error: &plexusv1.Error{}},
		{AgentVersion: "ünïcödé 🚀"},
	}
	for range 200 {
		replies = append(replies, &plexusv1.HelloReply{
			ApiVersion:   plexusv1.APIVersion(r.IntN(3)),
			AgentVersion: randString(r, 40),
			Error:        randPBError(r),
		})
	}
	for i, want := range replies {
		b, err := proto.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := shimwire.UnmarshalHelloReply(b)
		if err != nil {
			t.Fatalf("reply %d: UnmarshalHelloReply: %v", i, err)
		}
		if !equalHelloReply(got, want) {
			t.Fatalf("reply %d: decoded %+v (error %+v), want %v", i, got, got.Error, want)
		}
	}
}

// unknownFields returns one field of every wire type, numbered past the
// fields plexus.proto defines.
func unknownFields() []byte {
	var b []byte
	b = protowire.AppendTag(b, 100, protowire.VarintType)
	b = protowire.AppendVarint(b, 1<<40)
	b = protowire.AppendTag(b, 101, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, 0xdeadbeef)
	b = protowire.AppendTag(b, 102, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, 0xdeadbeefcafe)
	b = protowire.AppendTag(b, 103, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte("future field"))
	b = protowire.AppendTag(b, 104, protowire.StartGroupType)
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 5)
	b = protowire.AppendTag(b, 104, protowire.EndGroupType)
	return b
}

func TestUnknownFieldsSkipped(t *testing.T) {
	t.Parallel()
	unk := unknownFields()
	var errMsg []byte
	errMsg = append(errMsg, unk...)
	errMsg = protowire.AppendTag(errMsg, 1, protowire.VarintType)
	errMsg = protowire.AppendVarint(errMsg, 42)
	errMsg = append(errMsg, unk...)
	errMsg = protowire.AppendTag(errMsg, 2, protowire.BytesType)
	errMsg = protowire.AppendString(errMsg, "boom")
	// A known field number with the wrong wire type is an unknown field too.
	errMsg = protowire.AppendTag(errMsg, 3, protowire.Fixed32Type)
	errMsg = protowire.AppendFixed32(errMsg, 1)

	var resp []byte
	resp = append(resp, unk...)
	resp = protowire.AppendTag(resp, 1, protowire.BytesType)
	resp = protowire.AppendBytes(resp, []byte(`{"cniVersion":"1.0.0"}`))
	resp = append(resp, unk...)
	resp = protowire.AppendTag(resp, 2, protowire.BytesType)
	resp = protowire.AppendBytes(resp, errMsg)
	resp = protowire.AppendTag(resp, 1, protowire.VarintType) // wrong type for result
	resp = protowire.AppendVarint(resp, 9)
	resp = append(resp, unk...)

	got, err := shimwire.UnmarshalCNIResponse(resp)
	if err != nil {
		t.Fatalf("UnmarshalCNIResponse: %v", err)
	}
	var want plexusv1.CNIResponse
	if err := proto.Unmarshal(resp, &want); err != nil {
		t.Fatalf("proto.Unmarshal: %v", err)
	}
	if !equalResponse(got, &want) {
		t.Errorf("decoded %+v (error %+v), generated code decoded %v", got, got.Error, &want)
	}
	if string(got.Result) != `{"cniVersion":"1.0.0"}` || got.Error == nil || got.Error.Code != 42 || got.Error.Msg != "boom" || got.Error.Details != "" {
		t.Errorf("decoded %+v (error %+v)", got, got.Error)
	}

	var hello []byte
	hello = append(hello, unk...)
	hello = protowire.AppendTag(hello, 1, protowire.VarintType)
	hello = protowire.AppendVarint(hello, 1)
	hello = protowire.AppendTag(hello, 2, protowire.BytesType)
	hello = protowire.AppendString(hello, "agent-v1")
	hello = append(hello, unk...)
	hello = protowire.AppendTag(hello, 3, protowire.BytesType)
	hello = protowire.AppendBytes(hello, errMsg)
	reply, err := shimwire.UnmarshalHelloReply(hello)
	if err != nil {
		t.Fatalf("UnmarshalHelloReply: %v", err)
	}
	if reply.APIVersion != 1 || reply.AgentVersion != "agent-v1" || reply.Error == nil || reply.Error.Code != 42 || reply.Error.Msg != "boom" {
		t.Errorf("decoded %+v (error %+v)", reply, reply.Error)
	}
}

// TestLastScalarWins: a repeated scalar field keeps its last value, as the
// generated code does.
func TestLastScalarWins(t *testing.T) {
	t.Parallel()
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte("first"))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte("second"))
	got, err := shimwire.UnmarshalCNIResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Result) != "second" {
		t.Errorf("Result = %q, want second", got.Result)
	}
}

// TestRepeatedMessageFieldsMerge: the protobuf encoding spec says a message
// field seen twice is merged, and the generated code does so. The shim must
// read what the agent's encoder may legally send.
func TestRepeatedMessageFieldsMerge(t *testing.T) {
	t.Parallel()
	first, _ := proto.Marshal(&plexusv1.Error{Code: 7, Details: "d"})
	second, _ := proto.Marshal(&plexusv1.Error{Msg: "m"})
	var b []byte
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, first)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, second)

	var want plexusv1.CNIResponse
	if err := proto.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	got, err := shimwire.UnmarshalCNIResponse(b)
	if err != nil {
		t.Fatalf("UnmarshalCNIResponse: %v", err)
	}
	if !equalResponse(got, &want) {
		t.Errorf("CNIResponse: shimwire decoded error %+v, generated code %v", got.Error, want.GetError())
	}

	var hb []byte
	hb = protowire.AppendTag(hb, 3, protowire.BytesType)
	hb = protowire.AppendBytes(hb, first)
	hb = protowire.AppendTag(hb, 3, protowire.BytesType)
	hb = protowire.AppendBytes(hb, second)
	var wantHello plexusv1.HelloReply
	if err := proto.Unmarshal(hb, &wantHello); err != nil {
		t.Fatal(err)
	}
	gotHello, err := shimwire.UnmarshalHelloReply(hb)
	if err != nil {
		t.Fatalf("UnmarshalHelloReply: %v", err)
	}
	if !equalHelloReply(gotHello, &wantHello) {
		t.Errorf("HelloReply: shimwire decoded error %+v, generated code %v", gotHello.Error, wantHello.GetError())
	}
}

// TestOversizedVarints: a varint too large for the proto field's type is
// truncated to it, as the protobuf spec and the generated code do (uint32
// code, int32 enum).
func TestOversizedVarints(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msg  []byte
	}{
		{"error code over uint32", func() []byte {
			var e []byte
			e = protowire.AppendTag(e, 1, protowire.VarintType)
			e = protowire.AppendVarint(e, 1<<32+5)
			var b []byte
			b = protowire.AppendTag(b, 2, protowire.BytesType)
			return protowire.AppendBytes(b, e)
		}()},
		{"api version over int32", func() []byte {
			var b []byte
			b = protowire.AppendTag(b, 1, protowire.VarintType)
			return protowire.AppendVarint(b, 1<<32+1)
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if strings.HasPrefix(tt.name, "api") {
				var want plexusv1.HelloReply
				if err := proto.Unmarshal(tt.msg, &want); err != nil {
					t.Fatal(err)
				}
				got, err := shimwire.UnmarshalHelloReply(tt.msg)
				if err != nil {
					t.Fatal(err)
				}
				if !equalHelloReply(got, &want) {
					t.Errorf("shimwire decoded api version %d, generated code %d", got.APIVersion, want.GetApiVersion())
				}
				return
			}
			var want plexusv1.CNIResponse
			if err := proto.Unmarshal(tt.msg, &want); err != nil {
				t.Fatal(err)
			}
			got, err := shimwire.UnmarshalCNIResponse(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if !equalResponse(got, &want) {
				t.Errorf("shimwire decoded error %+v, generated code %v", got.Error, want.GetError())
			}
		})
	}
}

func TestTruncatedInput(t *testing.T) {
	t.Parallel()
	full, err := proto.Marshal(&plexusv1.CNIResponse{
		Result: []byte(`{"cniVersion":"1.0.0"}`),
		Error:  &plexusv1.Error{Code: 300, Msg: "msg", Details: "details"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Every prefix either fails in both decoders or decodes to the same value.
	for n := 0; n < len(full); n++ {
		prefix := full[:n]
		var want plexusv1.CNIResponse
		wantErr := proto.Unmarshal(prefix, &want)
		got, err := shimwire.UnmarshalCNIResponse(prefix)
		if (err != nil) != (wantErr != nil) {
			t.Errorf("prefix %d: shimwire error %v, generated code error %v", n, err, wantErr)
			continue
		}
		if err == nil && !equalResponse(got, &want) {
			t.Errorf("prefix %d: decoded %+v, generated %v", n, got, &want)
		}
	}

	// Cuts inside a field always fail.
	mid := []struct {
		name string
		b    []byte
	}{
		{"tag only", []byte{0x0a}},
		{"length past the end", []byte{0x0a, 0x05, 'a', 'b'}},
		{"incomplete varint", []byte{0x08, 0x80}},
		{"incomplete tag", []byte{0x80}},
		{"nested error cut", []byte{0x12, 0x02, 0x08, 0x80}},
		{"nested error length past its end", []byte{0x12, 0x03, 0x12, 0x05, 'a'}},
		{"unterminated group", []byte{0x0b, 0x08, 0x01}},
		{"fixed32 cut", []byte{0x1d, 0x01, 0x02}},
		{"fixed64 cut", []byte{0x19, 0x01, 0x02, 0x03}},
		{"field number zero", []byte{0x00, 0x01}},
		{"stray end group", []byte{0x0c}},
	}
	for _, tt := range mid {
		if got, err := shimwire.UnmarshalCNIResponse(tt.b); err == nil {
			t.Errorf("UnmarshalCNIResponse(%s %x) = %+v, want an error", tt.name, tt.b, got)
		}
		// In a HelloReply field 2 is a string, the Error is field 3.
		hb := tt.b
		if hb[0] == 0x12 {
			hb = append([]byte{0x1a}, hb[1:]...)
		}
		if got, err := shimwire.UnmarshalHelloReply(hb); err == nil {
			t.Errorf("UnmarshalHelloReply(%s %x) = %+v, want an error", tt.name, hb, got)
		}
		var pb plexusv1.CNIResponse
		if err := proto.Unmarshal(tt.b, &pb); err == nil {
			t.Errorf("test input %s %x is valid protobuf", tt.name, tt.b)
		}
	}
}

func TestFramesToProtodelim(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(9, 10))
	reqs := requestsUnderTest(r)[:50]
	var buf bytes.Buffer
	for _, req := range reqs {
		if err := shimwire.WriteFrame(&buf, shimwire.MarshalCNIRequest(req)); err != nil {
			t.Fatalf("WriteFrame: %v", err)
		}
	}
	br := bufio.NewReader(&buf)
	opts := protodelim.UnmarshalOptions{MaxSize: shimwire.MaxMessageSize}
	for i, req := range reqs {
		var pb plexusv1.CNIRequest
		if err := opts.UnmarshalFrom(br, &pb); err != nil {
			t.Fatalf("frame %d: protodelim.UnmarshalFrom: %v", i, err)
		}
		if uint64(pb.GetVerb()) != req.Verb || pb.GetContainerId() != req.ContainerID || !bytes.Equal(pb.GetConfig(), req.Config) || pb.GetArgs() != req.Args {
			t.Fatalf("frame %d: decoded %v, want %+v", i, &pb, req)
		}
	}
	var pb plexusv1.CNIRequest
	if err := opts.UnmarshalFrom(br, &pb); !errors.Is(err, io.EOF) {
		t.Errorf("after the last frame: %v, want io.EOF", err)
	}
}

func TestFramesFromProtodelim(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(11, 12))
	resps := responsesUnderTest(r)[:60]
	var buf bytes.Buffer
	for _, resp := range resps {
		if _, err := protodelim.MarshalTo(&buf, resp); err != nil {
			t.Fatalf("protodelim.MarshalTo: %v", err)
		}
	}
	br := bufio.NewReader(&buf)
	for i, want := range resps {
		frame, err := shimwire.ReadFrame(br)
		if err != nil {
			t.Fatalf("frame %d: ReadFrame: %v", i, err)
		}
		got, err := shimwire.UnmarshalCNIResponse(frame)
		if err != nil {
			t.Fatalf("frame %d: UnmarshalCNIResponse: %v", i, err)
		}
		if !equalResponse(got, want) {
			t.Fatalf("frame %d: decoded %+v, want %v", i, got, want)
		}
	}
	if _, err := shimwire.ReadFrame(br); !errors.Is(err, io.EOF) {
		t.Errorf("after the last frame: %v, want io.EOF", err)
	}
}

func TestFrameLimits(t *testing.T) {
	t.Parallel()
	t.Run("read over the limit", func(t *testing.T) {
		t.Parallel()
		for _, n := range []uint64{shimwire.MaxMessageSize + 1, 1 << 40, 1<<64 - 1} {
			hdr := protowire.AppendVarint(nil, n)
			// No body: the length alone must be refused, before any allocation or read.
			_, err := shimwire.ReadFrame(bufio.NewReader(bytes.NewReader(hdr)))
			if !errors.Is(err, shimwire.ErrFrameTooLarge) {
				t.Errorf("ReadFrame of length %d: %v, want ErrFrameTooLarge", n, err)
			}
		}
	})
	t.Run("read at the limit", func(t *testing.T) {
		t.Parallel()
		msg := bytes.Repeat([]byte{'m'}, shimwire.MaxMessageSize)
		var buf bytes.Buffer
		if err := shimwire.WriteFrame(&buf, msg); err != nil {
			t.Fatalf("WriteFrame of MaxMessageSize: %v", err)
		}
		got, err := shimwire.ReadFrame(bufio.NewReader(&buf))
		if err != nil {
			t.Fatalf("ReadFrame of MaxMessageSize: %v", err)
		}
		if !bytes.Equal(got, msg) {
			t.Errorf("ReadFrame returned %d bytes, want %d", len(got), len(msg))
		}
	})
	t.Run("write over the limit", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		if err := shimwire.WriteFrame(&buf, make([]byte, shimwire.MaxMessageSize+1)); err == nil {
			t.Error("WriteFrame over MaxMessageSize succeeded")
		}
		if buf.Len() != 0 {
			t.Errorf("WriteFrame over the limit wrote %d bytes", buf.Len())
		}
	})
	t.Run("empty frame", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		if err := shimwire.WriteFrame(&buf, nil); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), []byte{0}) {
			t.Errorf("empty frame = %x, want 00", buf.Bytes())
		}
		got, err := shimwire.ReadFrame(bufio.NewReader(&buf))
		if err != nil || len(got) != 0 {
			t.Errorf("ReadFrame of an empty frame = %x, %v", got, err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name string
			in   []byte
			want error
		}{
			{"nothing", nil, io.EOF},
			{"cut varint", []byte{0x80}, io.EOF},
			{"cut body", []byte{0x05, 'a', 'b'}, io.ErrUnexpectedEOF},
		}
		for _, tt := range tests {
			_, err := shimwire.ReadFrame(bufio.NewReader(bytes.NewReader(tt.in)))
			if !errors.Is(err, tt.want) {
				t.Errorf("ReadFrame(%s) = %v, want %v", tt.name, err, tt.want)
			}
		}
	})
	t.Run("varint overflow", func(t *testing.T) {
		t.Parallel()
		in := bytes.Repeat([]byte{0x80}, 11)
		_, err := shimwire.ReadFrame(bufio.NewReader(bytes.NewReader(in)))
		if err == nil || errors.Is(err, io.EOF) {
			t.Errorf("ReadFrame of an 11-byte varint = %v, want an overflow error", err)
		}
	})
}

// errWriter fails every write.
type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestWriteFrameError(t *testing.T) {
	t.Parallel()
	if err := shimwire.WriteFrame(errWriter{}, []byte("x")); err == nil || err.Error() != "broken pipe" {
		t.Errorf("WriteFrame to a failing writer = %v, want its error", err)
	}
}
