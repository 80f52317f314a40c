package server

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/etcdaas/etcdaas/pkg/watchbuffer"
)

func TestWatchBufferSizeFlag(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    int
		invalid bool
	}{
		{args: nil, want: watchbuffer.DefaultSize},
		{args: []string{"--watch-buffer-size=0"}, want: 0},
		{args: []string{"--watch-buffer-size=5000"}, want: 5000},
		{args: []string{"--watch-buffer-size=-1"}, want: -1, invalid: true},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			o := NewOptions()
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if o.WatchBufferSize != tc.want {
				t.Fatalf("WatchBufferSize = %d, want %d", o.WatchBufferSize, tc.want)
			}
			errs := o.validateWatchBuffer()
			if tc.invalid != (len(errs) > 0) {
				t.Fatalf("validation errors %v, want invalid=%v", errs, tc.invalid)
			}
			if tc.invalid && !strings.Contains(errs[0].Error(), "--watch-buffer-size") {
				t.Fatalf("error %q does not name the flag", errs[0])
			}
		})
	}
}
