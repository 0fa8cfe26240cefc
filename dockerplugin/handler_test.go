package dockerplugin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

const (
	netID = "n1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	epID  = "e1bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// bindMesh binds netID to mesh before a case.
func bindMesh(f *fakeBackend) { f.bound[netID] = "mesh" }

// bindQuiet binds netID to the internal network.
func bindQuiet(f *fakeBackend) { f.bound[netID] = "quiet" }

type handlerCase struct {
	name   string
	call   string // path without the leading "/"
	body   string
	setup  func(*fakeBackend)
	status int // default 200
	// want is the JSON answer (compared as values) for 200; for errors, a
	// substring of Err.
	want string
	// wantCall is the last backend call other than Networks ("" = none).
	wantCall string
}

func runHandlerCases(t *testing.T, cases []handlerCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			if tc.setup != nil {
				tc.setup(f)
			}
			p := New(f, nil)
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, "/"+tc.call, strings.NewReader(tc.body))
			p.ServeHTTP(rec, req)
			wantStatus := tc.status
			if wantStatus == 0 {
				wantStatus = http.StatusOK
			}
			if rec.Code != wantStatus {
				t.Fatalf("status %d, want %d; body %s", rec.Code, wantStatus, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != contentType {
				t.Errorf("content type %q", ct)
			}
			if wantStatus == http.StatusOK {
				assertJSON(t, rec.Body.String(), tc.want)
			} else {
				var e errorResponse
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
					t.Fatalf("error body %q: %v", rec.Body, err)
				}
				if e.Err == "" || !strings.Contains(e.Err, tc.want) {
					t.Errorf("Err %q, want it to contain %q", e.Err, tc.want)
				}
			}
			if got := f.lastCall(); got != tc.wantCall {
				t.Errorf("backend call %q, want %q", got, tc.wantCall)
			}
		})
	}
}

// assertJSON compares two JSON documents as values.
func assertJSON(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("answer %q is not JSON: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("test's want %q is not JSON: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("answer\n %s\nwant\n %s", strings.TrimSpace(got), want)
	}
}

func TestHandshake(t *testing.T) {
	runHandlerCases(t, []handlerCase{
		{name: "activate empty body", call: "Plugin.Activate", want: `{"Implements":["NetworkDriver","IpamDriver"]}`},
		{name: "activate null", call: "Plugin.Activate", body: "null\n", want: `{"Implements":["NetworkDriver","IpamDriver"]}`},
		{name: "network capabilities", call: "NetworkDriver.GetCapabilities", body: "null", want: `{"Scope":"local","ConnectivityScope":"global"}`},
		{name: "ipam capabilities", call: "IpamDriver.GetCapabilities", body: "null", want: `{"RequiresMACAddress":false,"RequiresRequestReplay":false}`},
		{name: "address spaces", call: "IpamDriver.GetDefaultAddressSpaces", body: "null", want: `{"LocalDefaultAddressSpace":"vxmesh","GlobalDefaultAddressSpace":"vxmesh"}`},
		{name: "discover new", call: "NetworkDriver.DiscoverNew", body: `{"DiscoveryType":1,"DiscoveryData":{"Address":"198.18.0.2","self":false}}`, want: `{}`},
		{name: "discover delete", call: "NetworkDriver.DiscoverDelete", body: `{"DiscoveryType":1,"DiscoveryData":{"Address":"198.18.0.2","self":false}}`, want: `{}`},
		{name: "unknown call is 404", call: "NetworkDriver.AllocateNetwork", body: `{}`, status: http.StatusNotFound, want: "unknown call POST /NetworkDriver.AllocateNetwork"},
	})
}

func TestRequestPool(t *testing.T) {
	twoOverlays := func(f *fakeBackend) {
		f.nets = append(f.nets, Network{Name: "mesh2", Driver: "overlay", Subnet: netip.MustParsePrefix("10.201.0.0/16"), Gateway: netip.MustParseAddr("10.201.0.1")})
	}
	runHandlerCases(t, []handlerCase{
		{name: "contract command: the only overlay, any pool", call: "IpamDriver.RequestPool",
			body: `{"AddressSpace":"vxmesh","Pool":"","SubPool":"","Options":{},"V6":false}`,
			want: `{"PoolID":"vxmesh:mesh:v4","Pool":"0.0.0.0/0","Data":{"com.docker.network.gateway":"10.200.0.1/16"}}`},
		{name: "ipam option names the network", call: "IpamDriver.RequestPool",
			body: `{"AddressSpace":"vxmesh","Options":{"vxmesh.network":"web"}}`,
			want: `{"PoolID":"vxmesh:web:v4","Pool":"0.0.0.0/0","Data":{"com.docker.network.gateway":"172.26.0.1/16"}}`},
		{name: "subnet names the network", call: "IpamDriver.RequestPool",
			body: `{"AddressSpace":"vxmesh","Pool":"172.26.0.0/16"}`,
			want: `{"PoolID":"vxmesh:web:v4","Pool":"172.26.0.0/16","Data":{"com.docker.network.gateway":"172.26.0.1/16"}}`},
		{name: "ip range goes into the pool ID", call: "IpamDriver.RequestPool",
			body: `{"AddressSpace":"vxmesh","Pool":"172.26.0.0/16","SubPool":"172.26.5.0/24"}`,
			want: `{"PoolID":"vxmesh:web:v4:172.26.5.0/24","Pool":"172.26.0.0/16","Data":{"com.docker.network.gateway":"172.26.0.1/16"}}`},
		{name: "ipv6 pool is real", call: "IpamDriver.RequestPool",
			body: `{"AddressSpace":"vxmesh","V6":true}`,
			want: `{"PoolID":"vxmesh:mesh:v6","Pool":"fd00:200::/64","Data":{"com.docker.network.gateway":"fd00:200::1/64"}}`},
		{name: "ip range outside the subnet", call: "IpamDriver.RequestPool",
			body: `{"Pool":"172.26.0.0/16","SubPool":"172.27.5.0/24"}`, status: 500, want: `ip range 172.27.5.0/24 is not inside vxmesh network "web"`},
		{name: "ip range without subnet", call: "IpamDriver.RequestPool",
			body: `{"SubPool":"172.26.5.0/24"}`, status: 500, want: "add --subnet"},
		{name: "subnet of another network than named", call: "IpamDriver.RequestPool",
			body: `{"Pool":"172.26.0.0/16","Options":{"vxmesh.network":"mesh"}}`, status: 500, want: `subnet 172.26.0.0/16 is not vxmesh network "mesh"'s subnet 10.200.0.0/16`},
		{name: "subnet of no network", call: "IpamDriver.RequestPool",
			body: `{"Pool":"192.168.0.0/16"}`, status: 500, want: "is no vxmesh network's (vxmesh networks: mesh, quiet, web)"},
		{name: "unknown name", call: "IpamDriver.RequestPool",
			body: `{"Options":{"vxmesh.network":"nope"}}`, status: 500, want: `no vxmesh network "nope"`},
		{name: "no ipv6 subnet", call: "IpamDriver.RequestPool",
			body: `{"Options":{"vxmesh.network":"web"},"V6":true}`, status: 500, want: `"web" has no IPv6 subnet`},
		{name: "two overlays need a name", call: "IpamDriver.RequestPool", setup: twoOverlays,
			body: `{}`, status: 500, want: "--ipam-opt vxmesh.network=NAME or --subnet SUBNET"},
		{name: "garbled subnet", call: "IpamDriver.RequestPool",
			body: `{"Pool":"10.200.0.0/99"}`, status: 500, want: "parse subnet"},
		{name: "not JSON", call: "IpamDriver.RequestPool", body: `{"Pool":`, status: 400, want: "decode IpamDriver.RequestPool"},
		{name: "networks unavailable", call: "IpamDriver.RequestPool", setup: func(f *fakeBackend) { f.failOn = "Networks" },
			body: `{}`, status: 500, want: "list vxmesh networks: fake failure"},
		{name: "release pool", call: "IpamDriver.ReleasePool", body: `{"PoolID":"vxmesh:mesh:v4"}`, want: `{}`},
		{name: "release foreign pool", call: "IpamDriver.ReleasePool", body: `{"PoolID":"LocalDefault/172.18.0.0/16"}`, status: 400, want: "not a vxmesh pool"},
	})
}

func TestRequestAddress(t *testing.T) {
	gwOpts := `"Options":{"RequestAddressType":"com.docker.network.gateway"}`
	runHandlerCases(t, []handlerCase{
		{name: "gateway", call: "IpamDriver.RequestAddress",
			body: `{"PoolID":"vxmesh:mesh:v4","Address":"",` + gwOpts + `}`, want: `{"Address":"10.200.0.1/16"}`},
		{name: "gateway repeated by --gateway", call: "IpamDriver.RequestAddress",
			body: `{"PoolID":"vxmesh:mesh:v4","Address":"10.200.0.1",` + gwOpts + `}`, want: `{"Address":"10.200.0.1/16"}`},
		{name: "another --gateway", call: "IpamDriver.RequestAddress",
			body: `{"PoolID":"vxmesh:mesh:v4","Address":"10.200.0.2",` + gwOpts + `}`, status: 500, want: `gateway is 10.200.0.1, not 10.200.0.2`},
		{name: "ipv6 gateway", call: "IpamDriver.RequestAddress",
			body: `{"PoolID":"vxmesh:mesh:v6",` + gwOpts + `}`, want: `{"Address":"fd00:200::1/64"}`},
		{name: "any address", call: "IpamDriver.RequestAddress",
			body: `{"PoolID":"vxmesh:mesh:v4","Address":"","Options":null}`, want: `{"Address":"10.200.5.10/16"}`,
			wantCall: "ReserveAddress mesh want=invalid IP range=invalid Prefix v6=false"},
		{name: "--ip", call: "IpamDriver.RequestAddress",
			body: `{"PoolID":"vxmesh:mesh:v4","Address":"10.200.9.9"}`, want: `{"Address":"10.200.9.9/16"}`,
			wantCall: "ReserveAddress mesh want=10.200.9.9 range=invalid Prefix v6=false"},
		{name: "--ip-range", call: "IpamDriver.RequestAddress",
			body: `{"PoolID":"vxmesh:web:v4:172.26.5.0/24"}`, want: `{"Address":"10.200.5.10/16"}`,
			wantCall: "ReserveAddress web want=invalid IP range=172.26.5.0/24 v6=false"},
		{name: "ipv6 address", call: "IpamDriver.RequestAddress",
			body: `{"PoolID":"vxmesh:mesh:v6","Address":"fd00:200::99"}`, want: `{"Address":"fd00:200::99/64"}`,
			wantCall: "ReserveAddress mesh want=fd00:200::99 range=invalid Prefix v6=true"},
		{name: "--ip outside the subnet", call: "IpamDriver.RequestAddress",
			body: `{"PoolID":"vxmesh:mesh:v4","Address":"10.201.0.9"}`, status: 500, want: `not in vxmesh network "mesh"'s subnet 10.200.0.0/16`},
		{name: "--ip is the gateway", call: "IpamDriver.RequestAddress",
			body: `{"PoolID":"vxmesh:mesh:v4","Address":"10.200.0.1"}`, status: 500, want: `is vxmesh network "mesh"'s gateway`},
		{name: "taken", call: "IpamDriver.RequestAddress", setup: func(f *fakeBackend) { f.reserved[netip.MustParseAddr("10.200.9.9")] = "mesh" },
			body: `{"PoolID":"vxmesh:mesh:v4","Address":"10.200.9.9"}`, status: 500, want: `reserve an address in vxmesh network "mesh": address 10.200.9.9 is taken`,
			wantCall: "ReserveAddress mesh want=10.200.9.9 range=invalid Prefix v6=false"},
		{name: "garbled address", call: "IpamDriver.RequestAddress",
			body: `{"PoolID":"vxmesh:mesh:v4","Address":"ten"}`, status: 400, want: `address "ten" is not an IP address`},
		{name: "foreign pool", call: "IpamDriver.RequestAddress",
			body: `{"PoolID":"LocalDefault/172.18.0.0/16"}`, status: 400, want: "not a vxmesh pool"},
		{name: "pool of a removed network", call: "IpamDriver.RequestAddress",
			body: `{"PoolID":"vxmesh:gone:v4"}`, status: 500, want: `no vxmesh network "gone"`},
		{name: "release", call: "IpamDriver.ReleaseAddress",
			body: `{"PoolID":"vxmesh:mesh:v4","Address":"10.200.5.10"}`, want: `{}`, wantCall: "ReleaseAddress mesh 10.200.5.10"},
		{name: "release the gateway is a no-op", call: "IpamDriver.ReleaseAddress",
			body: `{"PoolID":"vxmesh:mesh:v4","Address":"10.200.0.1"}`, want: `{}`},
		{name: "release nothing", call: "IpamDriver.ReleaseAddress",
			body: `{"PoolID":"vxmesh:mesh:v4"}`, status: 400, want: "no Address"},
		{name: "release fails", call: "IpamDriver.ReleaseAddress", setup: func(f *fakeBackend) { f.failOn = "ReleaseAddress" },
			body: `{"PoolID":"vxmesh:mesh:v4","Address":"10.200.5.10"}`, status: 500, want: `release 10.200.5.10 in vxmesh network "mesh": fake failure`,
			wantCall: "ReleaseAddress mesh 10.200.5.10"},
	})
}

func TestCreateNetwork(t *testing.T) {
	v4mesh := `"IPv4Data":[{"AddressSpace":"vxmesh","Pool":"0.0.0.0/0","Gateway":"10.200.0.1/16"}]`
	generic := func(kv string) string {
		return `"Options":{"com.docker.network.enable_ipv6":false,"com.docker.network.generic":{` + kv + `}}`
	}
	runHandlerCases(t, []handlerCase{
		{name: "contract command", call: "NetworkDriver.CreateNetwork",
			body: `{"NetworkID":"` + netID + `",` + generic(`"vxmesh.network":"mesh"`) + `,` + v4mesh + `,"IPv6Data":[]}`,
			want: `{}`, wantCall: "BindNetwork " + netID + " mesh"},
		{name: "gateway alone", call: "NetworkDriver.CreateNetwork",
			body: `{"NetworkID":"` + netID + `",` + generic(``) + `,` + v4mesh + `}`,
			want: `{}`, wantCall: "BindNetwork " + netID + " mesh"},
		{name: "subnet alone", call: "NetworkDriver.CreateNetwork",
			body: `{"NetworkID":"` + netID + `","IPv4Data":[{"Pool":"172.26.0.0/16","Gateway":"172.26.0.1/16"}]}`,
			want: `{}`, wantCall: "BindNetwork " + netID + " web"},
		{name: "dual stack", call: "NetworkDriver.CreateNetwork",
			body: `{"NetworkID":"` + netID + `",` + generic(`"vxmesh.network":"mesh"`) + `,` + v4mesh + `,"IPv6Data":[{"Pool":"fd00:200::/64","Gateway":"fd00:200::1/64"}]}`,
			want: `{}`, wantCall: "BindNetwork " + netID + " mesh"},
		{name: "option and pool disagree", call: "NetworkDriver.CreateNetwork",
			body:   `{"NetworkID":"` + netID + `",` + generic(`"vxmesh.network":"web"`) + `,` + v4mesh + `}`,
			status: 500, want: `-o vxmesh.network names vxmesh network "web" but IPv4 gateway 10.200.0.1 is vxmesh network "mesh"'s`},
		{name: "docker's default ipam", call: "NetworkDriver.CreateNetwork",
			body:   `{"NetworkID":"` + netID + `",` + generic(`"vxmesh.network":"mesh"`) + `,"IPv4Data":[{"Pool":"172.18.0.0/16","Gateway":"172.18.0.1/16"}]}`,
			status: 500, want: "create the network with --ipam-driver vxmesh"},
		{name: "no clue", call: "NetworkDriver.CreateNetwork",
			body: `{"NetworkID":"` + netID + `"}`, status: 500, want: "say which vxmesh network: -o vxmesh.network=NAME"},
		{name: "unknown name", call: "NetworkDriver.CreateNetwork",
			body: `{"NetworkID":"` + netID + `",` + generic(`"vxmesh.network":"nope"`) + `}`, status: 500, want: `no vxmesh network "nope"`},
		{name: "generic is not a map", call: "NetworkDriver.CreateNetwork",
			body: `{"NetworkID":"` + netID + `","Options":{"com.docker.network.generic":7}}`, status: 400, want: "decode com.docker.network.generic"},
		{name: "no id", call: "NetworkDriver.CreateNetwork", body: `{}`, status: 400, want: "no NetworkID"},
		{name: "bind fails", call: "NetworkDriver.CreateNetwork", setup: func(f *fakeBackend) { f.failOn = "BindNetwork" },
			body: `{"NetworkID":"` + netID + `",` + v4mesh + `}`, status: 500, want: `bind docker network n1aaaaaaaaaa to vxmesh network "mesh": fake failure`,
			wantCall: "BindNetwork " + netID + " mesh"},
		{name: "delete", call: "NetworkDriver.DeleteNetwork", setup: bindMesh,
			body: `{"NetworkID":"` + netID + `"}`, want: `{}`, wantCall: "UnbindNetwork " + netID},
		{name: "delete without id", call: "NetworkDriver.DeleteNetwork", body: `{}`, status: 400, want: "no NetworkID"},
	})
}

func TestEndpoints(t *testing.T) {
	ids := `"NetworkID":"` + netID + `","EndpointID":"` + epID + `"`
	runHandlerCases(t, []handlerCase{
		{name: "create: we choose the MAC", call: "NetworkDriver.CreateEndpoint", setup: bindMesh,
			body:     `{` + ids + `,"Interface":{"Address":"10.200.5.10/16","AddressIPv6":"","MacAddress":""},"Options":{"com.docker.network.endpoint.exposedports":[],"com.docker.network.portmap":[]}}`,
			want:     `{"Interface":{"MacAddress":"02:42:0a:c8:05:0a"}}`,
			wantCall: "CreateEndpoint " + netID + " " + epID + " 10.200.5.10/16 invalid Prefix "},
		{name: "create: docker chose the MAC", call: "NetworkDriver.CreateEndpoint", setup: bindMesh,
			body:     `{` + ids + `,"Interface":{"Address":"10.200.5.10/16","AddressIPv6":"fd00:200::5/64","MacAddress":"02:42:aa:bb:cc:dd"}}`,
			want:     `{}`,
			wantCall: "CreateEndpoint " + netID + " " + epID + " 10.200.5.10/16 fd00:200::5/64 02:42:aa:bb:cc:dd"},
		{name: "create: no address", call: "NetworkDriver.CreateEndpoint", setup: bindMesh,
			body: `{` + ids + `,"Interface":{}}`, status: 400, want: "no address: create the network with --ipam-driver vxmesh"},
		{name: "create: no interface at all", call: "NetworkDriver.CreateEndpoint", setup: bindMesh,
			body: `{` + ids + `}`, status: 400, want: "no address"},
		{name: "create: v6 in the v4 field", call: "NetworkDriver.CreateEndpoint", setup: bindMesh,
			body: `{` + ids + `,"Interface":{"Address":"fd00::1/64"}}`, status: 400, want: "not an IPv4 CIDR"},
		{name: "create: bad MAC", call: "NetworkDriver.CreateEndpoint", setup: bindMesh,
			body: `{` + ids + `,"Interface":{"Address":"10.200.5.10/16","MacAddress":"02:42"}}`, status: 400, want: "not an Ethernet address"},
		{name: "create: unbound network", call: "NetworkDriver.CreateEndpoint",
			body: `{` + ids + `,"Interface":{"Address":"10.200.5.10/16"}}`, status: 500, want: "is not bound",
			wantCall: "CreateEndpoint " + netID + " " + epID + " 10.200.5.10/16 invalid Prefix "},
		{name: "create: no endpoint id", call: "NetworkDriver.CreateEndpoint",
			body: `{"NetworkID":"` + netID + `"}`, status: 400, want: "NetworkID and EndpointID are required"},
		{name: "oper info", call: "NetworkDriver.EndpointOperInfo", body: `{` + ids + `}`, want: `{"Value":{}}`},
		{name: "join", call: "NetworkDriver.Join", setup: bindMesh,
			body:     `{` + ids + `,"SandboxKey":"/run/docker/netns/0123456789ab","Options":{"com.docker.network.portmap":[]}}`,
			want:     `{"InterfaceName":{"SrcName":"vxce1bb","DstPrefix":"eth"},"Gateway":"10.200.0.1","GatewayIPv6":"fd00:200::1"}`,
			wantCall: "Join " + netID + " " + epID + " /run/docker/netns/0123456789ab"},
		{name: "join internal", call: "NetworkDriver.Join", setup: bindQuiet,
			body:     `{` + ids + `,"SandboxKey":"/run/docker/netns/0123456789ab"}`,
			want:     `{"InterfaceName":{"SrcName":"vxce1bb","DstPrefix":"eth"},"DisableGatewayService":true}`,
			wantCall: "Join " + netID + " " + epID + " /run/docker/netns/0123456789ab"},
		{name: "join without sandbox", call: "NetworkDriver.Join", setup: bindMesh,
			body: `{` + ids + `}`, status: 400, want: "no SandboxKey"},
		{name: "join fails", call: "NetworkDriver.Join",
			body: `{` + ids + `,"SandboxKey":"/x"}`, status: 500, want: "join endpoint e1bbbbbbbbbb: docker network " + netID + " is not bound",
			wantCall: "Join " + netID + " " + epID + " /x"},
		{name: "leave", call: "NetworkDriver.Leave", body: `{` + ids + `}`, want: `{}`, wantCall: "Leave " + netID + " " + epID},
		{name: "delete", call: "NetworkDriver.DeleteEndpoint", body: `{` + ids + `}`, want: `{}`, wantCall: "DeleteEndpoint " + netID + " " + epID},
		{name: "delete fails", call: "NetworkDriver.DeleteEndpoint", setup: func(f *fakeBackend) { f.failOn = "DeleteEndpoint" },
			body: `{` + ids + `}`, status: 500, want: "delete endpoint e1bbbbbbbbbb: fake failure", wantCall: "DeleteEndpoint " + netID + " " + epID},
	})
}

func TestExternalConnectivity(t *testing.T) {
	ids := `"NetworkID":"` + netID + `","EndpointID":"` + epID + `"`
	runHandlerCases(t, []handlerCase{
		{name: "-p 8080:80 -p 198.18.0.1::53/udp", call: "NetworkDriver.ProgramExternalConnectivity",
			body: `{` + ids + `,"Options":{"com.docker.network.endpoint.exposedports":[{"Proto":6,"Port":80},{"Proto":17,"Port":53}],` +
				`"com.docker.network.portmap":[{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":8080,"HostPortEnd":8080},` +
				`{"Proto":17,"IP":"","Port":53,"HostIP":"198.18.0.1","HostPort":0,"HostPortEnd":0}]}}`,
			want:     `{}`,
			wantCall: "PublishPorts " + netID + " " + epID + " [{tcp 80 invalid IP 8080 8080} {udp 53 198.18.0.1 0 0}]"},
		{name: "host port range", call: "NetworkDriver.ProgramExternalConnectivity",
			body:     `{` + ids + `,"Options":{"com.docker.network.portmap":[{"Proto":132,"Port":80,"HostIP":"::","HostPort":8000,"HostPortEnd":8010}]}}`,
			want:     `{}`,
			wantCall: "PublishPorts " + netID + " " + epID + " [{sctp 80 :: 8000 8010}]"},
		{name: "no ports", call: "NetworkDriver.ProgramExternalConnectivity",
			body: `{` + ids + `,"Options":{}}`, want: `{}`, wantCall: "PublishPorts " + netID + " " + epID + " []"},
		{name: "null portmap", call: "NetworkDriver.ProgramExternalConnectivity",
			body: `{` + ids + `,"Options":{"com.docker.network.portmap":null}}`, want: `{}`, wantCall: "PublishPorts " + netID + " " + epID + " []"},
		{name: "unknown protocol", call: "NetworkDriver.ProgramExternalConnectivity",
			body: `{` + ids + `,"Options":{"com.docker.network.portmap":[{"Proto":99,"Port":80}]}}`, status: 400, want: "unknown protocol number 99"},
		{name: "container port 0", call: "NetworkDriver.ProgramExternalConnectivity",
			body: `{` + ids + `,"Options":{"com.docker.network.portmap":[{"Proto":6,"Port":0}]}}`, status: 400, want: "container port 0 out of range"},
		{name: "backwards range", call: "NetworkDriver.ProgramExternalConnectivity",
			body: `{` + ids + `,"Options":{"com.docker.network.portmap":[{"Proto":6,"Port":80,"HostPort":9000,"HostPortEnd":8000}]}}`, status: 400, want: "backwards"},
		{name: "garbled host ip", call: "NetworkDriver.ProgramExternalConnectivity",
			body: `{` + ids + `,"Options":{"com.docker.network.portmap":[{"Proto":6,"Port":80,"HostIP":"here"}]}}`, status: 400, want: "host ip"},
		{name: "portmap is not a list", call: "NetworkDriver.ProgramExternalConnectivity",
			body: `{` + ids + `,"Options":{"com.docker.network.portmap":{}}}`, status: 400, want: "decode com.docker.network.portmap"},
		{name: "revoke", call: "NetworkDriver.RevokeExternalConnectivity",
			body: `{` + ids + `}`, want: `{}`, wantCall: "PublishPorts " + netID + " " + epID + " []"},
		{name: "revoke fails", call: "NetworkDriver.RevokeExternalConnectivity", setup: func(f *fakeBackend) { f.failOn = "PublishPorts" },
			body: `{` + ids + `}`, status: 500, want: "unpublish ports of endpoint e1bbbbbbbbbb: fake failure", wantCall: "PublishPorts " + netID + " " + epID + " []"},
	})
}

func TestWrongMethod(t *testing.T) {
	rec := httptest.NewRecorder()
	New(newFake(), nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/Plugin.Activate", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET: status %d, want 404", rec.Code)
	}
}

func TestBodyLimit(t *testing.T) {
	rec := httptest.NewRecorder()
	big := `{"PoolID":"` + strings.Repeat("x", maxBody) + `"}`
	New(newFake(), nil).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/IpamDriver.ReleasePool", strings.NewReader(big)))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("status %d, want 400", rec.Code)
	}
}
