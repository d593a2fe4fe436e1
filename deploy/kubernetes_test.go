package deploy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// manifests are decoded Kubernetes objects of one build.
type manifests struct {
	statefulSets []*appsv1.StatefulSet
	deployments  []*appsv1.Deployment
	services     []*corev1.Service
	configMaps   []*corev1.ConfigMap
	accounts     []*corev1.ServiceAccount
	namespaces   []*corev1.Namespace
	policies     []*networkingv1.NetworkPolicy
	monitors     []*monitoringv1.ServiceMonitor
}

// decodeStrict decodes one object into its API type, refusing unknown
// fields (what kubectl apply --validate=strict refuses).
func (m *manifests) decodeStrict(t *testing.T, where string, doc []byte) {
	t.Helper()
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	var into any
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 StatefulSet":
		o := &appsv1.StatefulSet{}
		m.statefulSets, into = append(m.statefulSets, o), o
	case "apps/v1 Deployment":
		o := &appsv1.Deployment{}
		m.deployments, into = append(m.deployments, o), o
	case "v1 Service":
		o := &corev1.Service{}
		m.services, into = append(m.services, o), o
	case "v1 ConfigMap":
		o := &corev1.ConfigMap{}
		m.configMaps, into = append(m.configMaps, o), o
	case "v1 ServiceAccount":
		o := &corev1.ServiceAccount{}
		m.accounts, into = append(m.accounts, o), o
	case "v1 Namespace":
		o := &corev1.Namespace{}
		m.namespaces, into = append(m.namespaces, o), o
	case "networking.k8s.io/v1 NetworkPolicy":
		o := &networkingv1.NetworkPolicy{}
		m.policies, into = append(m.policies, o), o
	case "monitoring.coreos.com/v1 ServiceMonitor":
		o := &monitoringv1.ServiceMonitor{}
		m.monitors, into = append(m.monitors, o), o
	default:
		t.Fatalf("%s: %s %s is not a kind this test knows", where, tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		t.Errorf("%s: %s: %v", where, tm.Kind, err)
	}
}

func splitDocs(b []byte) [][]byte {
	var out [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^#.*$`).ReplaceAllString(d, "")) != "" {
			out = append(out, []byte(d))
		}
	}
	return out
}

// kustomize builds a kustomization in process, as kubectl apply -k does.
func kustomize(t *testing.T, dir string) *manifests {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	m := &manifests{}
	for _, r := range rm.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		m.decodeStrict(t, dir+": "+r.CurId().String(), b)
	}
	return m
}

// TestKubernetesManifestsDecodeStrictly decodes every file of the base and
// the overlay, one by one, into the Kubernetes API types, and checks that
// every kustomization names only files that exist and that every manifest
// is named by its kustomization.
func TestKubernetesManifestsDecodeStrictly(t *testing.T) {
	for _, dir := range []string{"kubernetes/base", "kubernetes/overlays/example"} {
		var k types.Kustomization
		b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(b, &k); err != nil {
			t.Fatalf("%s/kustomization.yaml: %v", dir, err)
		}
		named := map[string]bool{"kustomization.yaml": true}
		for _, r := range k.Resources {
			if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
				t.Errorf("%s: resource %s: %v", dir, r, err)
			}
			named[r] = true
		}
		for _, p := range k.Patches {
			if _, err := os.Stat(filepath.Join(dir, p.Path)); err != nil {
				t.Errorf("%s: patch %s: %v", dir, p.Path, err)
			}
			named[p.Path] = true
		}
		configFiles := map[string]bool{}
		for _, g := range k.ConfigMapGenerator {
			for _, f := range g.FileSources {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("%s: configMapGenerator file %s: %v", dir, f, err)
				}
				named[f], configFiles[f] = true, true
			}
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") {
				continue
			}
			if !named[e.Name()] {
				t.Errorf("%s/%s is not named by its kustomization", dir, e.Name())
			}
			if configFiles[e.Name()] || e.Name() == "kustomization.yaml" {
				continue
			}
			b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
			m := &manifests{}
			for i, d := range splitDocs(b) {
				m.decodeStrict(t, fmt.Sprintf("%s/%s#%d", dir, e.Name(), i), d)
			}
		}
	}
	// The base's configuration files are compose's (one configuration).
	for _, f := range []string{"watcher.yaml", "notifier.yaml"} {
		a, _ := os.ReadFile(f)
		b, _ := os.ReadFile(filepath.Join("kubernetes/base", f))
		if !bytes.Equal(a, b) {
			t.Errorf("kubernetes/base/%s differs from deploy/%s: keep one configuration (copy it)", f, f)
		}
	}
}

// TestKubernetesOverlay builds the example overlay with kustomize and
// checks what runs: one watcher replica with a PVC, probes on the real
// operations paths and ports, resources, the restrictive security
// context, a secret file for every *_FILE variable (each Secret documented
// in the README), the programs loading with exactly their env, args,
// ConfigMap and secret files, network policies and the ServiceMonitor
// selecting the pods and services they should.
func TestKubernetesOverlay(t *testing.T) {
	m := kustomize(t, "kubernetes/overlays/example")
	kustomize(t, "kubernetes/base")
	if len(m.statefulSets) != 1 || len(m.deployments) != 1 || len(m.configMaps) != 1 || len(m.monitors) != 1 || len(m.policies) != 2 || len(m.namespaces) != 1 {
		t.Fatalf("the overlay builds %d statefulsets, %d deployments, %d configmaps, %d servicemonitors, %d networkpolicies, %d namespaces",
			len(m.statefulSets), len(m.deployments), len(m.configMaps), len(m.monitors), len(m.policies), len(m.namespaces))
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	ss, dep, cm := m.statefulSets[0], m.deployments[0], m.configMaps[0]
	for _, o := range []string{ss.Namespace, dep.Namespace, cm.Namespace, m.monitors[0].Namespace} {
		if o != "pcwatch" {
			t.Errorf("an object is in namespace %q, want the overlay's pcwatch", o)
		}
	}
	if ss.Spec.Replicas == nil || *ss.Spec.Replicas != 1 {
		t.Errorf("watcher replicas %v, want 1 (one state file)", ss.Spec.Replicas)
	}
	if len(ss.Spec.VolumeClaimTemplates) != 1 || ss.Spec.VolumeClaimTemplates[0].Name != "data" {
		t.Errorf("watcher volume claims %v, want data", ss.Spec.VolumeClaimTemplates)
	}
	type pod struct {
		program string
		spec    corev1.PodSpec
		labels  map[string]string
	}
	pods := []pod{{"watcher", ss.Spec.Template.Spec, ss.Spec.Template.Labels}, {"notifier", dep.Spec.Template.Spec, dep.Spec.Template.Labels}}
	for _, p := range pods {
		where := "kubernetes: " + p.program
		checkPodSecurity(t, where, p.spec)
		if len(p.spec.Containers) != 1 {
			t.Fatalf("%s: %d containers", where, len(p.spec.Containers))
		}
		c := p.spec.Containers[0]
		if c.Image != "registry.example.com/pcwatch:1.0.0" {
			t.Errorf("%s: image %s, want the overlay's", where, c.Image)
		}
		env := map[string]string{}
		for _, e := range c.Env {
			if e.ValueFrom != nil {
				t.Errorf("%s: %s comes from valueFrom: secrets are files (*_FILE)", where, e.Name)
			}
			env[e.Name] = e.Value
		}
		if env["PCWATCH_NATS_URL"] != "nats://nats.nats.svc:4222" {
			t.Errorf("%s: the overlay's NATS URL is not applied: %q", where, env["PCWATCH_NATS_URL"])
		}
		fs := podFiles(t, where, p.spec, c, cm, string(readme))
		var listen string
		switch p.program {
		case "watcher":
			if len(c.Command) != 0 {
				t.Errorf("%s: command %q: the image's entrypoint is the watcher", where, c.Command)
			}
			cfg := checkWatcher(t, where, c.Args, env, fs, "app+user")
			listen = cfg.Listen
			if cfg.DataDir != "/data" || !mounted(c, "data", "/data") {
				t.Errorf("%s: data dir %q is not the PVC", where, cfg.DataDir)
			}
			if !slices.Contains(cfg.AllowedHosts, "pcwatch-watcher") {
				t.Errorf("%s: allowed hosts %v lack the service name", where, cfg.AllowedHosts)
			}
		case "notifier":
			if !slices.Equal(c.Command, []string{"/usr/local/bin/notifier"}) {
				t.Errorf("%s: command %q", where, c.Command)
			}
			checkNotifier(t, where, c.Args, env, fs)
			listen = checkNotifierArgs(t, where, c.Args)["listen"]
		}
		_, port, _ := strings.Cut(listen, ":")
		if len(c.Ports) != 1 || c.Ports[0].Name != "ops" || strconv.Itoa(int(c.Ports[0].ContainerPort)) != port || !strings.HasPrefix(listen, "0.0.0.0:") {
			t.Errorf("%s: ports %v, but the program listens on %q", where, c.Ports, listen)
		}
		for name, pr := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
			want := "/healthz"
			if name == "readiness" {
				want = "/readyz"
			}
			if pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != want || pr.HTTPGet.Port.String() != "ops" {
				t.Errorf("%s: %s probe %+v, want GET %s on ops", where, name, pr, want)
			}
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: resources %v, want cpu and memory requests and a memory limit", where, c.Resources)
		}
		// Services and network policies select the pod.
		svc := 0
		for _, s := range m.services {
			if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(p.labels)) {
				svc++
				if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Name != "ops" || strconv.Itoa(int(s.Spec.Ports[0].Port)) != port {
					t.Errorf("%s: service %s ports %v", where, s.Name, s.Spec.Ports)
				}
				if !slices.Contains(allowedHosts(t, p.program, c, cm), s.Name) {
					t.Errorf("%s: service %s is not an allowed host of the operations server (its requests would get 421)", where, s.Name)
				}
			}
		}
		if svc != 1 {
			t.Errorf("%s: %d services select it, want 1", where, svc)
		}
		pol := 0
		for _, np := range m.policies {
			sel, err := metav1Selector(np.Spec.PodSelector.MatchLabels)
			if err != nil || !sel.Matches(labels.Set(p.labels)) {
				continue
			}
			pol++
			if len(np.Spec.PolicyTypes) != 2 {
				t.Errorf("%s: policy %s types %v, want Ingress and Egress", where, np.Name, np.Spec.PolicyTypes)
			}
			var in []string
			for _, r := range np.Spec.Ingress {
				for _, pp := range r.Ports {
					in = append(in, pp.Port.String())
				}
			}
			if !slices.Equal(in, []string{port}) {
				t.Errorf("%s: policy %s lets in %v, want only the operations port %s", where, np.Name, in, port)
			}
			var out []string
			for _, r := range np.Spec.Egress {
				for _, pp := range r.Ports {
					out = append(out, pp.Port.String())
				}
			}
			for _, need := range []string{"53", "4222", "443"} {
				if !slices.Contains(out, need) {
					t.Errorf("%s: policy %s does not let out port %s", where, np.Name, need)
				}
			}
		}
		if pol != 1 {
			t.Errorf("%s: %d network policies select it, want 1", where, pol)
		}
	}
	sm := m.monitors[0]
	sel := labels.SelectorFromSet(sm.Spec.Selector.MatchLabels)
	scraped := 0
	for _, s := range m.services {
		if sel.Matches(labels.Set(s.Labels)) {
			scraped++
		}
	}
	if scraped != 2 || len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("the ServiceMonitor selects %d services with %d endpoints, want both with one", scraped, len(sm.Spec.Endpoints))
	}
	ep := sm.Spec.Endpoints[0]
	if ep.Port != "ops" || ep.Path != "/metrics" || ep.Authorization == nil || ep.Authorization.Credentials == nil ||
		ep.Authorization.Credentials.Name != "pcwatch-ops" || ep.Authorization.Credentials.Key != "token" {
		t.Errorf("ServiceMonitor endpoint %+v: want port ops, /metrics, with the pcwatch-ops token", ep)
	}
}

func metav1Selector(m map[string]string) (labels.Selector, error) {
	return labels.SelectorFromSet(m), nil
}

func mounted(c corev1.Container, volume, path string) bool {
	for _, vm := range c.VolumeMounts {
		if vm.Name == volume && vm.MountPath == path {
			return true
		}
	}
	return false
}

// allowedHosts are the Host names the program's operations server
// answers besides loopback and its address.
func allowedHosts(t *testing.T, program string, c corev1.Container, cm *corev1.ConfigMap) []string {
	if program == "notifier" {
		return strings.Split(checkNotifierArgs(t, "notifier", c.Args)["allowed-hosts"], ",")
	}
	for _, e := range c.Env {
		if e.Name == "PCWATCH_ALLOWED_HOSTS" {
			return strings.Split(e.Value, ",")
		}
	}
	return nil
}

// checkPodSecurity: non-root, seccomp, no service account token, and
// each container read-only, unprivileged, without capabilities.
func checkPodSecurity(t *testing.T, where string, s corev1.PodSpec) {
	t.Helper()
	psc := s.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault || psc.FSGroup == nil {
		t.Errorf("%s: pod security context %+v", where, psc)
	}
	if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
		t.Errorf("%s: the service account token is mounted", where)
	}
	for _, c := range s.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil ||
			*sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
			len(sc.Capabilities.Add) > 0 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || (sc.Privileged != nil && *sc.Privileged) ||
			sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: container %s security context %+v", where, c.Name, sc)
		}
		if !mounted(c, "tmp", "/tmp") {
			t.Errorf("%s: no writable /tmp on the read-only root", where)
		}
	}
}

var secretDocRE = regexp.MustCompile(`kubectl -n pcwatch create secret generic (\S+)((?: --from-file=[a-z-]+=\S+)+)`)

// podFiles maps the container's mounted files: the ConfigMap's keys and
// the projected Secrets' items (dummy values), checking that every Secret
// and key is created by a documented kubectl command in the README.
func podFiles(t *testing.T, where string, spec corev1.PodSpec, c corev1.Container, cm *corev1.ConfigMap, readme string) files {
	t.Helper()
	documented := map[string][]string{}
	for _, m := range secretDocRE.FindAllStringSubmatch(readme, -1) {
		for _, f := range regexp.MustCompile(`--from-file=([a-z-]+)=`).FindAllStringSubmatch(m[2], -1) {
			documented[m[1]] = append(documented[m[1]], f[1])
		}
	}
	fs := files{}
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	for _, vm := range c.VolumeMounts {
		v, ok := vols[vm.Name]
		switch {
		case !ok && vm.Name == "data":
		case !ok:
			t.Errorf("%s: mount %s names no volume", where, vm.Name)
		case v.ConfigMap != nil:
			if !strings.HasPrefix(cm.Name, v.ConfigMap.Name+"-") && cm.Name != v.ConfigMap.Name {
				t.Errorf("%s: configMap %s is not the generated %s", where, v.ConfigMap.Name, cm.Name)
			}
			for _, it := range v.ConfigMap.Items {
				data, ok := cm.Data[it.Key]
				if !ok {
					t.Errorf("%s: configMap key %s does not exist", where, it.Key)
				}
				fs[vm.MountPath+"/"+it.Path] = data
			}
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.Secret == nil {
					continue
				}
				for _, it := range src.Secret.Items {
					if !slices.Contains(documented[src.Secret.Name], it.Key) {
						t.Errorf("%s: Secret %s key %s is not created by a documented kubectl command (README, Deploy: Kubernetes)", where, src.Secret.Name, it.Key)
					}
					fs[vm.MountPath+"/"+it.Path] = dummySecret(it.Path)
				}
			}
		}
	}
	// Every *_FILE variable names a mounted file (checkWatcher and
	// checkNotifier read them).
	for _, e := range c.Env {
		if strings.HasSuffix(e.Name, "_FILE") {
			if _, ok := fs[e.Value]; !ok {
				t.Errorf("%s: %s=%s is not a mounted secret file", where, e.Name, e.Value)
			}
		}
	}
	return fs
}
