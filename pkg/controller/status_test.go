package controller

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// A condition message longer than the API allows is cut so that the server accepts it: at a
// character, never inside one. Bytes cut out of a character (or invalid in the error text)
// travel in JSON as U+FFFD, three bytes each, and would take the message past the limit, so
// that every status write of the instance were refused.
func TestLongConditionMessagesStayValid(t *testing.T) {
	inst := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", Generation: 1},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)},
	}
	now := metav1.NewTime(time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC))
	for name, msg := range map[string]string{
		"multi-byte characters": strings.Repeat("€", 12000),
		"invalid bytes":         strings.Repeat("\xff", 20000),
	} {
		t.Run(name, func(t *testing.T) {
			status := computeStatus(inst, nil, errors.New(msg), now)
			// What the server decodes from the status the controller sends.
			data, err := json.Marshal(status)
			if err != nil {
				t.Fatal(err)
			}
			var received v1beta1.ETCDInstanceStatus
			if err := json.Unmarshal(data, &received); err != nil {
				t.Fatal(err)
			}
			if errs := metav1validation.ValidateConditions(received.Conditions, field.NewPath("status", "conditions")); len(errs) > 0 {
				t.Fatalf("the server refuses the status: %v", errs.ToAggregate())
			}
		})
	}
}
