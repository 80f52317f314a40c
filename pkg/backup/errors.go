package backup

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
)

// ErrMisconfigured marks an error that only a change of the destination's configuration can
// fix: a bucket that does not exist, keys the store does not know or that may not do what was
// asked, an endpoint, region or caBundle the store cannot be used with. Retrying does not help.
var ErrMisconfigured = errors.New("backup destination misconfigured")

// ErrStoreUnavailable marks an error retrying may fix: the store did not answer (refused or
// timed out connections, a connection cut short) or answered that it cannot serve now (5xx,
// SlowDown, a request timeout), or the Kubernetes API failed for now to give the Secret that
// holds the store's credentials.
var ErrStoreUnavailable = errors.New("backup store unavailable")

// classifiedError marks err as being of class (ErrMisconfigured or ErrStoreUnavailable) for
// errors.Is, keeping its message.
type classifiedError struct {
	class, err error
}

func (e *classifiedError) Error() string   { return e.err.Error() }
func (e *classifiedError) Unwrap() []error { return []error{e.class, e.err} }

func classify(class, err error) error { return &classifiedError{class: class, err: err} }

// httpToHTTPS is net/http's error for an https request answered in http; it wraps no
// tls.RecordHeaderError, so its text is what tells it.
const httpToHTTPS = "server gave HTTP response to HTTPS client"

// classifyUnanswered classifies an error of a request the store did not answer: one whose TLS
// handshake failed (an untrusted or mismatched certificate, an https endpoint that speaks http)
// is misconfigured, one that could not connect, timed out or was cut short is unavailable.
// Other errors are returned as they are.
func classifyUnanswered(err error) error {
	var (
		verification *tls.CertificateVerificationError
		unknownCA    x509.UnknownAuthorityError
		hostname     x509.HostnameError
		invalid      x509.CertificateInvalidError
		record       tls.RecordHeaderError
		netErr       net.Error
	)
	switch {
	case errors.As(err, &verification), errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid):
		return classify(ErrMisconfigured, fmt.Errorf("the S3 endpoint's certificate cannot be verified (check caBundle and the endpoint's host name): %w", err))
	case errors.As(err, &record), strings.Contains(err.Error(), httpToHTTPS):
		return classify(ErrMisconfigured, fmt.Errorf("the S3 endpoint does not answer in TLS (is it http://?): %w", err))
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.As(err, &netErr):
		return classify(ErrStoreUnavailable, err)
	}
	return err
}

// NeedsConfigurationChange reports whether err, an error of a destination, is one that only a
// change of configuration fixes, so that retrying it soon does not help: S3 credentials missing
// (ErrCredentials) or refused by the store, a bucket that does not exist, an endpoint or
// caBundle the store cannot be used with (ErrMisconfigured), a destination this server does
// not serve (ErrNoDestination). An error that may pass (ErrStoreUnavailable) is not one, even
// when it is about credentials too, such as a Secret the Kubernetes API cannot give for now.
// The backups and restore subresources answer the first with a 409, the second with a 503;
// the controller reports the first on an instance restoring from the destination.
func NeedsConfigurationChange(err error) bool {
	if err == nil || errors.Is(err, ErrStoreUnavailable) {
		return false
	}
	return errors.Is(err, ErrMisconfigured) || errors.Is(err, ErrCredentials) || errors.Is(err, ErrNoDestination)
}
