package node

import (
	"reflect"
	"testing"
)

func TestHostStateRoundTrip(t *testing.T) {
	in := hostState{
		Scratch: "/tmp/etcdaas-cluster-1",
		Sysctls: map[string]string{"vm.overcommit_memory": "0", "kernel.panic": "1"},
		Created: []string{"/var/lib/kubelet", "/run/containerd"},
	}
	out := decodeHostState(in.encode())
	if !reflect.DeepEqual(in, out) {
		t.Errorf("decode(encode(%+v)) = %+v", in, out)
	}
	if got := decodeHostState("garbage\nsysctl only-two\n"); got.Scratch != "" || len(got.Sysctls) != 0 || len(got.Created) != 0 {
		t.Errorf("malformed lines must be ignored, got %+v", got)
	}
}

func TestUnescapeMountPath(t *testing.T) {
	for in, want := range map[string]string{
		`/tmp/a`:             "/tmp/a",
		`/tmp/with\040space`: "/tmp/with space",
		`/tmp/tab\011x`:      "/tmp/tab\tx",
	} {
		if got := unescapeMountPath(in); got != want {
			t.Errorf("unescapeMountPath(%q) = %q, want %q", in, got, want)
		}
	}
}
