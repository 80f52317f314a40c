package framework

import (
	"testing"
	"time"
)

func TestScratchControlPlane(t *testing.T) {
	c := StartControlPlane(t)
	c.OurBin = "/tmp/e2ebin"
	c.serverArgs = c.etcdaasAPIServerArgs()
	c.StartEtcdaasAPIServer()
	if err := c.WaitForAPIServicesAvailable(t.Context(), time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"api-resources", "--api-group=etcdaas.dev"}, {"get", "apiservices"}, {"explain", "etcd.spec"}} {
		r := c.AdminKubectl().Run(t.Context(), "", args...)
		t.Log(r)
	}
	time.Sleep(3 * time.Second)
	t.Log(c.Process("etcdaas-apiserver").Tail(40))
}
