// Command kube-apiserver-harness runs a real kube-apiserver with an embedded
// etcd in one process, for herald's integration tests.
//
// It binds everything to 127.0.0.1, turns on RBAC, authenticates two users
// from a static token file (an admin in system:masters and the non-admin
// user "herald"), writes a kubeconfig for each into --kubeconfig-dir, and
// prints one JSON line on stdout once /readyz answers ok:
//
//	{"ready":true,"server":"https://127.0.0.1:PORT","admin":"...","herald":"...","etcd":"http://..."}
//
// "audit" in that line is the API server's audit log (JSON lines, level
// RequestResponse) of every request the "herald" user makes.
//
// It runs until SIGTERM/SIGINT, or until its standard input closes (so a
// test process that dies takes the server with it; -stdin=false turns that
// off). Lines on standard input are commands:
//
//	compact   compacts etcd at its current revision, then prints
//	          {"compacted":REVISION}
//
// Several test processes can share one server: with -state-file the ready
// line is also written to that file (removed on exit), and with -users-lock
// the server exits once no process has held a shared flock(2) on that file
// for -idle-exit.
//
// Arguments after "--" are passed to kube-apiserver as they are.
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/component-base/cli/globalflag"
	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/component-base/featuregate"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
	apiapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apioptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

// The non-admin identity herald runs as in the tests.
const heraldUser = "herald"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "durations" {
		if err := runDurations(); err != nil {
			fmt.Fprintln(os.Stderr, "kube-apiserver-harness durations:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "kstatus" {
		if err := runKstatus(); err != nil {
			fmt.Fprintln(os.Stderr, "kube-apiserver-harness kstatus:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kube-apiserver-harness:", err)
		os.Exit(1)
	}
}

func run() error {
	kubeconfigDir := flag.String("kubeconfig-dir", "", "directory to write admin.kubeconfig and herald.kubeconfig into (required)")
	port := flag.Int("port", 0, "secure port on 127.0.0.1 (0 picks a free one)")
	dataDir := flag.String("data-dir", "", "directory for etcd data, certificates and keys (default: a temporary directory, removed on exit)")
	compaction := flag.Duration("etcd-compaction-interval", 5*time.Minute, "how often kube-apiserver compacts etcd (0 turns it off)")
	verbosity := flag.Int("v", 0, "kube-apiserver log verbosity")
	watchStdin := flag.Bool("stdin", true, "stop when standard input closes, and read commands from it")
	stateFile := flag.String("state-file", "", "also write the ready line to this file, and remove it on exit")
	usersLock := flag.String("users-lock", "", "exit once no process has held a shared flock on this file for -idle-exit")
	idleExit := flag.Duration("idle-exit", 10*time.Second, "see -users-lock")
	flag.Parse()
	if *kubeconfigDir == "" {
		return errors.New("--kubeconfig-dir is required")
	}
	if err := os.MkdirAll(*kubeconfigDir, 0o755); err != nil {
		return err
	}

	dir := *dataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "kube-apiserver-harness-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		cancel()
	}()

	// Ports: etcd client and peer, and the API server unless given.
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	if *port == 0 {
		*port = ports[2]
	}

	etcd, err := startEtcd(filepath.Join(dir, "etcd"), ports[0], ports[1])
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])

	pki, err := writePKI(filepath.Join(dir, "pki"))
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", *port)

	args := []string{
		"--etcd-servers=" + etcdURL,
		"--etcd-compaction-interval=" + compaction.String(),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(*port),
		"--cert-dir=" + filepath.Join(dir, "pki"),
		"--tls-cert-file=" + pki.servingCert,
		"--tls-private-key-file=" + pki.servingKey,
		"--authorization-mode=RBAC",
		"--token-auth-file=" + pki.tokenFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pki.serviceAccountKey,
		"--service-account-signing-key-file=" + pki.serviceAccountKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		// Nothing answers for the "kubernetes" Service on loopback.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--audit-policy-file=" + pki.auditPolicy,
		"--audit-log-path=" + filepath.Join(dir, "audit.log"),
		"--audit-log-format=json",
		"--audit-log-mode=blocking",
		"--v=" + strconv.Itoa(*verbosity),
	}
	args = append(args, flag.Args()...)

	if err := writeKubeconfig(filepath.Join(*kubeconfigDir, "admin.kubeconfig"), server, pki.caPEM, "admin", pki.adminToken); err != nil {
		return err
	}
	if err := writeKubeconfig(filepath.Join(*kubeconfigDir, "herald.kubeconfig"), server, pki.caPEM, heraldUser, pki.heraldToken); err != nil {
		return err
	}

	apiserverDone := make(chan error, 1)
	go func() { apiserverDone <- runAPIServer(ctx, args) }()

	readyErr := make(chan error, 1)
	go func() { readyErr <- waitReady(ctx, server, pki.caPEM, pki.adminToken) }()

	var once sync.Once
	stop := func() { once.Do(cancel) }
	select {
	case err := <-readyErr:
		if err != nil {
			stop()
			<-apiserverDone
			etcd.Close()
			return err
		}
	case err := <-apiserverDone:
		etcd.Close()
		if err == nil {
			err = errors.New("kube-apiserver stopped before it was ready")
		}
		return err
	}

	ready, _ := json.Marshal(map[string]any{
		"ready":  true,
		"server": server,
		"admin":  filepath.Join(*kubeconfigDir, "admin.kubeconfig"),
		"herald": filepath.Join(*kubeconfigDir, "herald.kubeconfig"),
		"etcd":   etcdURL,
		"audit":  filepath.Join(dir, "audit.log"),
		"pid":    os.Getpid(),
	})
	if *stateFile != "" {
		tmp := *stateFile + ".tmp"
		if err := os.WriteFile(tmp, append(ready, '\n'), 0o644); err != nil {
			stop()
		} else if err := os.Rename(tmp, *stateFile); err != nil {
			stop()
		}
		defer os.Remove(*stateFile)
	}
	fmt.Println(string(ready))

	if *usersLock != "" {
		go func() {
			if err := waitIdle(ctx, *usersLock, *idleExit, *stateFile); err != nil {
				fmt.Fprintln(os.Stderr, "users lock:", err)
			}
			stop()
		}()
	}

	// Standard input: commands, and its end stops the server.
	go func() {
		if !*watchStdin {
			return
		}
		scanner := bufio.NewScanner(os.Stdin)
		for scanner.Scan() {
			switch scanner.Text() {
			case "compact":
				rev, err := compact(ctx, etcdURL)
				if err != nil {
					fmt.Fprintln(os.Stderr, "compact:", err)
					fmt.Printf("{\"error\":%q}\n", err.Error())
				} else {
					fmt.Printf("{\"compacted\":%d}\n", rev)
				}
			case "":
			default:
				fmt.Fprintf(os.Stderr, "unknown command %q\n", scanner.Text())
			}
		}
		stop()
	}()

	var result error
	select {
	case <-ctx.Done():
		// Give the API server a moment to shut down cleanly.
		select {
		case result = <-apiserverDone:
		case <-time.After(15 * time.Second):
			result = errors.New("kube-apiserver did not stop within 15s")
		}
	case result = <-apiserverDone:
		if result == nil {
			result = errors.New("kube-apiserver stopped")
		}
	}
	etcd.Close()
	return result
}

// heldLock keeps the users lock's file open (and locked) until exit.
var heldLock *os.File

// waitIdle returns once no process has held a shared flock on path for
// idle. It then keeps an exclusive lock until the process exits and removes
// stateFile first, so a process that takes the shared lock afterwards finds
// no server and starts its own.
func waitIdle(ctx context.Context, path string, idle time.Duration, stateFile string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	var idleSince time.Time
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			idleSince = time.Time{}
			continue
		}
		if idleSince.IsZero() {
			idleSince = time.Now()
		}
		if time.Since(idleSince) >= idle {
			// Keep the lock until exit.
			heldLock = f
			if stateFile != "" {
				os.Remove(stateFile)
			}
			fmt.Fprintf(os.Stderr, "no user for %s: stopping\n", idle)
			return nil
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_UN); err != nil {
			return err
		}
	}
}

// freePorts asks the kernel for n distinct free ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func startEtcd(dir string, clientPort, peerPort int) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.Name = "harness"
	clientURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", clientPort)}
	peerURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", peerPort)}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{"stderr"}
	// The tests' data is small and short-lived.
	cfg.QuotaBackendBytes = 1 << 30
	cfg.UnsafeNoFsync = true

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, errors.New("not ready within 60s")
	}
}

// compact compacts etcd at its current revision, so that watches resumed
// from older resourceVersions get 410 Gone.
func compact(ctx context.Context, endpoint string) (int64, error) {
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      nil,
	})
	if err != nil {
		return 0, err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	status, err := client.Status(ctx, endpoint)
	if err != nil {
		return 0, err
	}
	rev := status.Header.Revision
	if _, err := client.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		return 0, err
	}
	return rev, nil
}

func runAPIServer(ctx context.Context, args []string) error {
	s := apioptions.NewServerRunOptions()
	featureGate := s.GenericServerRunOptions.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)

	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	namedFlagSets := s.Flags()
	globalflag.AddGlobalFlags(namedFlagSets.FlagSet("global"), "kube-apiserver", logs.SkipLoggingConfigurationFlags())
	for _, f := range namedFlagSets.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	// kube-apiserver's loopback clients should not log self-issued warnings.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	if err := logsapi.ValidateAndApply(s.Logs, featureGate); err != nil {
		return err
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return utilerrors.NewAggregate(errs)
	}
	if f, ok := featureGate.(featuregate.MutableFeatureGate); ok {
		f.AddMetrics()
	}
	defer klog.Flush()
	return apiapp.Run(ctx, completed)
}

// waitReady polls /readyz with the admin token until it answers 200.
func waitReady(ctx context.Context, server string, caPEM []byte, token string) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	deadline := time.Now().Add(3 * time.Minute)
	last := "no answer"
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, server+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("/readyz not ok within 3 minutes: %s", last)
}

type pki struct {
	caPEM             []byte
	auditPolicy       string
	servingCert       string
	servingKey        string
	serviceAccountKey string
	tokenFile         string
	adminToken        string
	heraldToken       string
}

// writePKI writes a CA, a serving certificate for 127.0.0.1 and localhost
// signed by it, a service-account signing key and the static token file.
func writePKI(dir string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kube-apiserver-harness-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	servingKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	servingTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	}
	servingDER, err := x509.CreateCertificate(rand.Reader, servingTemplate, ca, &servingKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	servingKeyDER, err := x509.MarshalECPrivateKey(servingKey)
	if err != nil {
		return nil, err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}

	p := &pki{
		caPEM:             pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		servingCert:       filepath.Join(dir, "serving.crt"),
		servingKey:        filepath.Join(dir, "serving.key"),
		serviceAccountKey: filepath.Join(dir, "service-account.key"),
		tokenFile:         filepath.Join(dir, "tokens.csv"),
		auditPolicy:       filepath.Join(dir, "audit-policy.yaml"),
		adminToken:        randomToken(),
		heraldToken:       randomToken(),
	}
	files := map[string][]byte{
		p.servingCert:                pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: servingDER}),
		p.servingKey:                 pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: servingKeyDER}),
		p.serviceAccountKey:          pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}),
		filepath.Join(dir, "ca.crt"): p.caPEM,
		p.auditPolicy:                []byte(auditPolicy),
		// token,user,uid,"groups"
		p.tokenFile: fmt.Appendf(nil, "%s,admin,admin,\"system:masters\"\n%s,%s,%s\n",
			p.adminToken, p.heraldToken, heraldUser, heraldUser),
	}
	for path, data := range files {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// auditPolicy records every request of the herald user with its request
// and response bodies (watch streams excepted), so that tests can see what
// herald wrote and in which form it read (e.g. metadata only).
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: RequestResponse
    users: ["` + heraldUser + `"]
  - level: None
`

func randomToken() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func writeKubeconfig(path, server string, caPEM []byte, user, token string) error {
	config := clientcmdapi.NewConfig()
	config.Clusters["harness"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	config.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	config.Contexts[user] = &clientcmdapi.Context{Cluster: "harness", AuthInfo: user, Namespace: "default"}
	config.CurrentContext = user
	return clientcmd.WriteToFile(*config, path)
}
