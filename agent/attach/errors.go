package attach

import (
	"errors"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/plexus-cni/plexus/agent/devices"
	"github.com/plexus-cni/plexus/agent/resolve"
	"github.com/plexus-cni/plexus/agent/selection"
	"github.com/plexus-cni/plexus/agent/source"
)

// CNI error codes. 1-99 are the CNI spec's; 100 and up are plexus's own.
const (
	CodeIncompatibleVersion = types.ErrIncompatibleCNIVersion // 1
	CodeInvalidEnv          = types.ErrInvalidEnvironmentVariables
	CodeIOFailure           = types.ErrIOFailure
	CodeDecodeFailure       = types.ErrDecodingFailure
	CodeInvalidConfig       = types.ErrInvalidNetworkConfig
	CodeTryAgainLater       = types.ErrTryAgainLater
	CodeNotAvailable        = types.ErrPluginNotAvailable

	// CodeDelegateFailed: a delegate plugin failed; the message names it.
	CodeDelegateFailed uint = 100
	// CodeInvalidSelection: the pod's network selection is invalid.
	CodeInvalidSelection uint = 101
	// CodeNotFound: a pod, NAD or on-disk configuration does not exist.
	CodeNotFound uint = 102
	// CodeForbidden: the pod may not use the network (namespace isolation).
	CodeForbidden uint = 103
	// CodeAlreadyAttached: ADD for a (container, ifname) that is attached.
	CodeAlreadyAttached uint = 104
)

// ToCNIError maps err to the CNI error object the shim prints: an explicit
// code if one was attached, else one derived from the error's type. A
// delegate's own error details are kept.
func ToCNIError(err error) *types.Error {
	code := CodeDelegateFailed
	var coded *codedError
	var selErr *selection.Error
	var confErr *resolve.ConfigError
	var forbidden *selection.ForbiddenError
	var devErr *devices.Error
	switch {
	case errors.As(err, &coded):
		code = coded.code
	case errors.As(err, &selErr), errors.As(err, &devErr):
		// A pod selecting networks its device requests cannot serve is
		// an invalid selection too.
		code = CodeInvalidSelection
	case errors.As(err, &confErr):
		code = CodeInvalidConfig
	case errors.As(err, &forbidden):
		code = CodeForbidden
	case errors.Is(err, source.ErrNotFound):
		code = CodeNotFound
	}
	out := &types.Error{Code: code, Msg: err.Error()}
	var delegateErr *types.Error
	if errors.As(err, &delegateErr) {
		out.Details = delegateErr.Details
	}
	return out
}

// codedError carries an explicit CNI code through wrapping.
type codedError struct {
	code uint
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

func withCode(code uint, err error) error { return &codedError{code: code, err: err} }
