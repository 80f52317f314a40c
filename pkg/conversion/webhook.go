package conversion

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "sigs.k8s.io/json"
)

// MaxReviewBytes bounds the body of a ConversionReview the Webhook reads (kube-apiserver
// sends at most its own request size limit, 3 MiB, per object list).
const MaxReviewBytes = 32 << 20

// Webhook serves the conversion webhook of a CustomResourceDefinition that stores
// ETCDInstances under another group: the CRD-mode peer that etcdaas is measured against.
// Each object is converted as etcdaas-apiserver converts it, through the internal hub with
// the same defaulting and conversion functions.
type Webhook struct {
	// Group is the CRD's group; it stands for etcdaas.dev in the objects it converts.
	Group     string
	converter *Converter
}

// NewWebhook returns the conversion webhook of a CRD of group group.
func NewWebhook(group string) *Webhook {
	return &Webhook{Group: group, converter: New()}
}

// ServeHTTP answers a POSTed apiextensions.k8s.io/v1 ConversionReview.
func (w *Webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(rw, "a ConversionReview must be POSTed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, MaxReviewBytes))
	if err != nil {
		status := http.StatusBadRequest
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			status = http.StatusRequestEntityTooLarge
		}
		http.Error(rw, err.Error(), status)
		return
	}
	var review apiextensionsv1.ConversionReview
	if err := json.Unmarshal(body, &review); err != nil {
		http.Error(rw, "decoding the ConversionReview: "+err.Error(), http.StatusBadRequest)
		return
	}
	if review.Request == nil {
		http.Error(rw, "the ConversionReview has no request", http.StatusBadRequest)
		return
	}
	out := apiextensionsv1.ConversionReview{TypeMeta: review.TypeMeta, Response: w.Review(review.Request)}
	rw.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(rw).Encode(&out); err != nil {
		http.Error(rw, err.Error(), http.StatusInternalServerError)
	}
}

// Review converts every object of req; the response fails as a whole, with the reason, when
// one object cannot be converted.
func (w *Webhook) Review(req *apiextensionsv1.ConversionRequest) *apiextensionsv1.ConversionResponse {
	resp := &apiextensionsv1.ConversionResponse{UID: req.UID}
	to, err := w.served(req.DesiredAPIVersion)
	if err == nil {
		resp.ConvertedObjects = make([]runtime.RawExtension, 0, len(req.Objects))
		for i, obj := range req.Objects {
			var raw []byte
			if raw, err = w.convertObject(obj.Raw, to); err != nil {
				err = fmt.Errorf("object %d: %w", i, err)
				break
			}
			resp.ConvertedObjects = append(resp.ConvertedObjects, runtime.RawExtension{Raw: raw})
		}
	}
	if err != nil {
		resp.ConvertedObjects = nil
		resp.Result = metav1.Status{Status: metav1.StatusFailure, Message: err.Error()}
		return resp
	}
	resp.Result = metav1.Status{Status: metav1.StatusSuccess}
	return resp
}

// served maps an apiVersion of the CRD's group to the served etcdaas.dev version.
func (w *Webhook) served(apiVersion string) (schema.GroupVersion, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return schema.GroupVersion{}, err
	}
	if gv.Group != w.Group {
		return schema.GroupVersion{}, fmt.Errorf("apiVersion %q is not of group %s", apiVersion, w.Group)
	}
	return ParseVersion(gv.Version)
}

// convertObject decodes one object of the CRD's group strictly (a field the conversion
// does not know would be lost), converts it through the hub and encodes it in version to
// of the CRD's group.
func (w *Webhook) convertObject(raw []byte, to schema.GroupVersion) ([]byte, error) {
	var meta metav1.TypeMeta
	if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, err
	}
	from, err := w.served(meta.APIVersion)
	if err != nil {
		return nil, err
	}
	gvk := from.WithKind(meta.Kind)
	in, err := w.converter.scheme.New(gvk)
	if err != nil {
		return nil, err
	}
	strict, err := kjson.UnmarshalStrict(raw, in)
	if err != nil {
		return nil, err
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("%s %s: %w", meta.APIVersion, meta.Kind, errors.Join(strict...))
	}
	in.GetObjectKind().SetGroupVersionKind(gvk)
	out, err := w.converter.Convert(in, to)
	if err != nil {
		return nil, err
	}
	out.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{Group: w.Group, Version: to.Version, Kind: meta.Kind})
	return json.Marshal(out)
}
