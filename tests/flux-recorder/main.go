// Command flux-recorder posts events to an event webhook (herald's or
// Flux's event endpoint) through Flux's own recorder, as Flux's
// controllers do: a Warning about a Kustomization with an action, a
// related GitRepository and a revision annotation, then a Normal one
// without a related object.
//
//	flux-recorder -webhook http://127.0.0.1:9090/ -namespace flux-system
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/fluxcd/pkg/runtime/events"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

func object(apiVersion, kind, namespace, name string, annotations map[string]string) *unstructured.Unstructured {
	o := &unstructured.Unstructured{}
	o.SetAPIVersion(apiVersion)
	o.SetKind(kind)
	o.SetNamespace(namespace)
	o.SetName(name)
	o.SetUID("7d0cdc51-ddcf-4743-b223-83ca5c699632")
	o.SetAnnotations(annotations)
	return o
}

func main() {
	webhook := flag.String("webhook", "", "the event endpoint to post to")
	namespace := flag.String("namespace", "flux-system", "the namespace of the objects")
	flag.Parse()
	if *webhook == "" {
		fmt.Fprintln(os.Stderr, "-webhook is required")
		os.Exit(2)
	}
	recorder, err := events.NewRecorder(zap.New(), *webhook, "kustomize-controller",
		events.WithScheme(runtime.NewScheme()), events.WithRetryMax(2))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kustomization := object("kustomize.toolkit.fluxcd.io/v1", "Kustomization", *namespace, "my-app",
		map[string]string{"event.toolkit.fluxcd.io/deployment": "web"})
	source := object("source.toolkit.fluxcd.io/v1", "GitRepository", *namespace, "my-repo", nil)
	recorder.AnnotatedEventf(kustomization, source,
		map[string]string{"kustomize.toolkit.fluxcd.io/revision": "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"},
		corev1.EventTypeWarning, "ReconciliationFailed", "reconcile",
		"Deployment/%s/web dry-run failed", *namespace)
	recorder.Eventf(kustomization, nil, corev1.EventTypeNormal, "ReconciliationSucceeded", "apply",
		"Deployment/%s/web configured", *namespace)
}
