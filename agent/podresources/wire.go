package podresources

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// The two methods of kubelet's v1.PodResourcesLister the agent calls
// (k8s.io/kubelet/pkg/apis/podresources/v1/api.proto).
const (
	methodGet  = "/v1.PodResourcesLister/Get"
	methodList = "/v1.PodResourcesLister/List"
)

// gRPC status codes the client tells apart (google.golang.org/grpc/codes).
const (
	codeCanceled      = 1
	codeUnknown       = 2
	codeInternal      = 13
	codeUnimplemented = 12
	codeUnavailable   = 14
)

// statusError is a gRPC status other than OK, from the server.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("rpc error: code = %d desc = %s", e.code, e.msg)
}

// transportError: kubelet could not be reached, or the connection broke
// before the status came.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// call makes one unary gRPC call (gRPC over HTTP/2, PROTOCOL-HTTP2.md in
// grpc/grpc): a POST of one length-prefixed message, answered by one
// message and the status in the trailers, or by the status alone in the
// headers ("Trailers-Only").
func call(ctx context.Context, conn *http.Transport, method string, msg []byte) ([]byte, error) {
	frame := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
	frame = append(frame, msg...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://localhost"+method, bytes.NewReader(frame))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/grpc+proto")
	req.Header.Set("Te", "trailers")
	resp, err := conn.RoundTrip(req)
	if err != nil {
		return nil, &transportError{err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &statusError{code: httpStatusCode(resp.StatusCode), msg: "HTTP status " + resp.Status}
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/grpc") {
		return nil, &statusError{code: codeUnknown, msg: fmt.Sprintf("content-type %q is not gRPC", ct)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 5+maxMsgSize+1))
	if err != nil {
		return nil, &transportError{err}
	}
	code, desc, ok := grpcStatus(resp.Trailer)
	if !ok {
		code, desc, ok = grpcStatus(resp.Header)
	}
	if !ok {
		return nil, &statusError{code: codeInternal, msg: "answer without grpc-status"}
	}
	if code != 0 {
		return nil, &statusError{code: code, msg: desc}
	}
	if len(body) < 5 {
		return nil, &statusError{code: codeInternal, msg: "answer without a message"}
	}
	if body[0] != 0 {
		return nil, &statusError{code: codeInternal, msg: "compressed answer (none was offered)"}
	}
	n := binary.BigEndian.Uint32(body[1:5])
	if n > maxMsgSize {
		return nil, &statusError{code: codeInternal, msg: fmt.Sprintf("answer of %d bytes exceeds %d", n, maxMsgSize)}
	}
	if uint32(len(body)-5) != n {
		return nil, &statusError{code: codeInternal, msg: fmt.Sprintf("answer framed as %d bytes, %d sent", n, len(body)-5)}
	}
	return body[5:], nil
}

func grpcStatus(h http.Header) (code int, desc string, ok bool) {
	v := h.Get("Grpc-Status")
	if v == "" {
		return 0, "", false
	}
	code, err := strconv.Atoi(v)
	if err != nil {
		return codeUnknown, "grpc-status " + strconv.Quote(v), true
	}
	desc = h.Get("Grpc-Message")
	if d, err := url.PathUnescape(desc); err == nil {
		desc = d
	}
	return code, desc, true
}

// httpStatusCode maps an HTTP status that is not 200 as gRPC clients do.
func httpStatusCode(status int) int {
	switch status {
	case http.StatusNotFound:
		return codeUnimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return codeUnavailable
	}
	return codeUnknown
}

// The parts of v1.PodResources the agent reads.
type podResources struct {
	name, namespace string
	containers      []containerResources
}

type containerResources struct {
	name    string
	devices []containerDevices
}

type containerDevices struct {
	resource string
	ids      []string
}

// appendGetRequest encodes GetPodResourcesRequest{pod_name = 1,
// pod_namespace = 2}.
func appendGetRequest(b []byte, namespace, name string) []byte {
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, name)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendString(b, namespace)
}

// parseGetResponse decodes GetPodResourcesResponse{pod_resources = 1}; nil
// without it.
func parseGetResponse(b []byte) (*podResources, error) {
	var pr *podResources
	err := fields(b, func(num protowire.Number, v []byte) error {
		if num != 1 {
			return nil
		}
		p, err := parsePodResources(v)
		pr = p
		return err
	})
	return pr, err
}

// parseListResponse finds the pod in ListPodResourcesResponse{repeated
// pod_resources = 1}; nil if it is not listed.
func parseListResponse(b []byte, namespace, name string) (*podResources, error) {
	var found *podResources
	err := fields(b, func(num protowire.Number, v []byte) error {
		if num != 1 || found != nil {
			return nil
		}
		p, err := parsePodResources(v)
		if err == nil && p.namespace == namespace && p.name == name {
			found = p
		}
		return err
	})
	return found, err
}

// parsePodResources decodes PodResources{name = 1, namespace = 2, repeated
// containers = 3}.
func parsePodResources(b []byte) (*podResources, error) {
	p := &podResources{}
	err := fields(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			p.name = string(v)
		case 2:
			p.namespace = string(v)
		case 3:
			c, err := parseContainer(v)
			if err != nil {
				return err
			}
			p.containers = append(p.containers, c)
		}
		return nil
	})
	return p, err
}

// parseContainer decodes ContainerResources{name = 1, repeated devices = 2}
// and ContainerDevices{resource_name = 1, repeated device_ids = 2}.
func parseContainer(b []byte) (containerResources, error) {
	var c containerResources
	err := fields(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			c.name = string(v)
		case 2:
			var d containerDevices
			err := fields(v, func(num protowire.Number, v []byte) error {
				switch num {
				case 1:
					d.resource = string(v)
				case 2:
					d.ids = append(d.ids, string(v))
				}
				return nil
			})
			if err != nil {
				return err
			}
			c.devices = append(c.devices, d)
		}
		return nil
	})
	return c, err
}

var errWire = errors.New("malformed protobuf message from kubelet")

// fields calls f with the number and contents of each length-delimited
// field of the message b (strings, bytes, messages) and skips the others:
// every field the agent reads is one.
func fields(b []byte, f func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %w", errWire, protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("%w: %w", errWire, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return fmt.Errorf("%w: %w", errWire, protowire.ParseError(n))
		}
		b = b[n:]
		if err := f(num, v); err != nil {
			return err
		}
	}
	return nil
}
