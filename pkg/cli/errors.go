package cli

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/clientcmd"
)

// errorMessage formats err the way kubectl's cmdutil.CheckErr does: API errors as
// "Error from server (Reason): message" (with the server's Status message), invalid objects
// as "The Kind "name" is invalid: field: detail", connection failures in kubectl's words,
// anything else as "error: message"; several errors at once, one per line.
func errorMessage(err error) string {
	var agg utilerrors.Aggregate
	if errors.As(err, &agg) {
		if errs := utilerrors.Flatten(agg).Errors(); len(errs) > 1 {
			lines := make([]string, len(errs))
			for i, e := range errs {
				lines[i] = errorMessage(e)
			}
			return strings.Join(lines, "\n")
		}
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		s := status.Status()
		switch {
		case s.Reason == metav1.StatusReasonInvalid:
			return invalidMessage(s)
		case s.Reason == metav1.StatusReasonUnauthorized:
			return fmt.Sprintf("error: You must be logged in to the server (%s)", s.Message)
		case s.Reason != "":
			return fmt.Sprintf("Error from server (%s): %s", s.Reason, s.Message)
		default:
			return fmt.Sprintf("Error from server: %s", s.Message)
		}
	}
	if clientcmd.IsConfigurationInvalid(err) {
		return "Error in configuration: " + err.Error()
	}
	var urlErr *url.Error
	if errors.As(err, &urlErr) && urlErr.Err != nil {
		if strings.Contains(urlErr.Err.Error(), "connection refused") {
			host := urlErr.URL
			if u, perr := url.Parse(urlErr.URL); perr == nil {
				host = u.Host
			}
			return fmt.Sprintf("The connection to the server %s was refused - did you specify the right host or port?", host)
		}
		return fmt.Sprintf("Unable to connect to the server: %v", urlErr.Err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "error: ") {
		msg = "error: " + msg
	}
	return msg
}

// invalidMessage formats a 422 Invalid status with its field causes, one per line when
// there are several, as kubectl does.
func invalidMessage(s metav1.Status) string {
	details := s.Details
	if details == nil {
		if s.Message != "" {
			return "The request is invalid: " + s.Message
		}
		return "The request is invalid"
	}
	msg := "The request is invalid"
	if details.Kind != "" || details.Name != "" {
		msg = fmt.Sprintf("The %s %q is invalid", details.Kind, details.Name)
	} else if s.Message != "" && len(details.Causes) == 0 {
		msg += ": " + s.Message
	}
	causes := make([]string, 0, len(details.Causes))
	for _, c := range details.Causes {
		cause := c.Message
		if c.Field != "" {
			cause = c.Field + ": " + c.Message
		}
		causes = append(causes, cause)
	}
	switch len(causes) {
	case 0:
		return msg
	case 1:
		return msg + ": " + causes[0]
	default:
		return msg + ": \n* " + strings.Join(causes, "\n* ")
	}
}
