package cli

import (
	"errors"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
)

func TestErrorMessage(t *testing.T) {
	kind := etcdaas.Kind("ETCDInstance")
	for _, tc := range []struct {
		err  error
		want string
	}{
		{apierrors.NewNotFound(etcdinstancesResource, "x"), `Error from server (NotFound): etcdinstances.etcdaas.dev "x" not found`},
		{fmt.Errorf("wrapped: %w", apierrors.NewConflict(etcdinstancesResource, "x", errors.New("changed"))), `Error from server (Conflict): Operation cannot be fulfilled on etcdinstances.etcdaas.dev "x": changed`},
		{apierrors.NewInvalid(kind, "x", field.ErrorList{
			field.Invalid(field.NewPath("spec", "replicas"), 12, "must be between 1 and 9"),
			field.Forbidden(field.NewPath("spec", "tls"), "immutable"),
		}), "The ETCDInstance \"x\" is invalid: \n* spec.replicas: Invalid value: 12: must be between 1 and 9\n* spec.tls: Forbidden: immutable"},
		{&apierrors.StatusError{ErrStatus: metav1.Status{Reason: metav1.StatusReasonInvalid, Message: "bad"}}, "The request is invalid: bad"},
		{&apierrors.StatusError{ErrStatus: metav1.Status{Reason: metav1.StatusReasonInvalid, Message: "bad", Details: &metav1.StatusDetails{}}}, "The request is invalid: bad"},
		{apierrors.NewUnauthorized("token expired"), "error: You must be logged in to the server (token expired)"},
		{&apierrors.StatusError{ErrStatus: metav1.Status{Message: "teapot"}}, "Error from server: teapot"},
		{errors.New("plain"), "error: plain"},
		{errors.New("error: already prefixed"), "error: already prefixed"},
	} {
		if got := errorMessage(tc.err); got != tc.want {
			t.Errorf("errorMessage(%v)\n got %q\nwant %q", tc.err, got, tc.want)
		}
	}
}
