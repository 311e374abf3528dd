package shimwire

import "errors"

// The protobuf wire format, as much of it as these messages need. Written
// here rather than imported from google.golang.org/protobuf/encoding/
// protowire because that package's dependencies hash the running binary at
// init, a cost every shim exec would pay (docs/benchmarks.md).

type fieldNumber int32

type wireType int8

const (
	varintType  wireType = 0
	fixed64Type wireType = 1
	bytesType   wireType = 2
	startGroup  wireType = 3
	endGroup    wireType = 4
	fixed32Type wireType = 5
)

var (
	errTruncated = errors.New("truncated protobuf message")
	errOverflow  = errors.New("protobuf varint overflows 64 bits")
	errWireType  = errors.New("unsupported protobuf wire type")
	errFieldNum  = errors.New("invalid protobuf field number")
)

func appendVarintRaw(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendTag(b []byte, num fieldNumber, typ wireType) []byte {
	return appendVarintRaw(b, uint64(num)<<3|uint64(typ))
}

func appendLenBytes(b, v []byte) []byte {
	return append(appendVarintRaw(b, uint64(len(v))), v...)
}

// consumeVarint decodes a varint, returning it and its length, or n < 0.
func consumeVarint(b []byte) (v uint64, n int, err error) {
	for i := 0; i < len(b) && i < 10; i++ {
		c := b[i]
		if i == 9 && c > 1 {
			return 0, 0, errOverflow
		}
		v |= uint64(c&0x7f) << (7 * uint(i))
		if c < 0x80 {
			return v, i + 1, nil
		}
	}
	if len(b) >= 10 {
		return 0, 0, errOverflow
	}
	return 0, 0, errTruncated
}

func consumeTag(b []byte) (fieldNumber, wireType, int, error) {
	v, n, err := consumeVarint(b)
	if err != nil {
		return 0, 0, 0, err
	}
	num := v >> 3
	if num == 0 || num > 1<<29-1 {
		return 0, 0, 0, errFieldNum
	}
	return fieldNumber(num), wireType(v & 7), n, nil
}

// consumeValue returns the value of field num of type typ at the start of
// b: the varint (varintType), the payload (bytesType), and the bytes used.
// Fixed-size fields and (deprecated) groups are skipped, as unknown fields
// must be.
func consumeValue(num fieldNumber, typ wireType, b []byte) (v uint64, raw []byte, n int, err error) {
	switch typ {
	case startGroup:
		for n < len(b) {
			gnum, gtyp, m, err := consumeTag(b[n:])
			if err != nil {
				return 0, nil, 0, err
			}
			n += m
			if gtyp == endGroup {
				if gnum != num {
					return 0, nil, 0, errWireType
				}
				return 0, nil, n, nil
			}
			_, _, m, err = consumeValue(gnum, gtyp, b[n:])
			if err != nil {
				return 0, nil, 0, err
			}
			n += m
		}
		return 0, nil, 0, errTruncated
	case varintType:
		v, n, err = consumeVarint(b)
		return v, nil, n, err
	case bytesType:
		l, m, err := consumeVarint(b)
		if err != nil {
			return 0, nil, 0, err
		}
		if l > uint64(len(b)-m) {
			return 0, nil, 0, errTruncated
		}
		return 0, b[m : m+int(l)], m + int(l), nil
	case fixed64Type:
		if len(b) < 8 {
			return 0, nil, 0, errTruncated
		}
		return 0, nil, 8, nil
	case fixed32Type:
		if len(b) < 4 {
			return 0, nil, 0, errTruncated
		}
		return 0, nil, 4, nil
	}
	return 0, nil, 0, errWireType
}
